with

earnings_calls as (

    select * from {{ source("historical", "earnings_calls") }}

),

final as (

    select
        call_id,
        issuer_id,
        instrument_id,
        cast(session_date as date) as session_date,
        market_id,
        cast(call_at as timestamp with time zone) as call_at,
        fiscal_period,
        cast(eps_actual as double precision) as eps_actual,
        cast(eps_consensus as double precision) as eps_consensus,
        transcript,
        cast(ingested_at as timestamp with time zone) as ingested_at

    from earnings_calls

)

select * from final
