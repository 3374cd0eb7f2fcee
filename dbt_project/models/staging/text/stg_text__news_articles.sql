with

news_articles as (

    select * from {{ source("historical", "news_articles") }}

),

final as (

    select
        article_id,
        cast(session_date as date) as session_date,
        market_id,
        cast(published_at as timestamp with time zone) as published_at,
        source,
        headline,
        body,
        language as language_code,
        cast(ingested_at as timestamp with time zone) as ingested_at

    from news_articles

)

select * from final
