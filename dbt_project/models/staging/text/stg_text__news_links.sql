with

news_links as (

    select * from {{ source("historical", "news_links") }}

),

final as (

    select
        article_id,
        instrument_id,
        cast(session_date as date) as session_date,
        market_id,
        cast(relevance as double precision) as relevance_score

    from news_links

)

select * from final
