with

filings as (

    select * from {{ source("historical", "filings") }}

),

final as (

    select
        filing_id,
        issuer_id,
        instrument_id,
        cast(session_date as date) as session_date,
        market_id,
        cast(filed_at as timestamp with time zone) as filed_at,
        filing_type,
        title,
        body,
        cast(ingested_at as timestamp with time zone) as ingested_at

    from filings

)

select * from final
