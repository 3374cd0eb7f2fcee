with

prices_daily as (

    select * from {{ source("historical", "prices_daily") }}

),

final as (

    select
        instrument_id,
        cast(session_date as date) as session_date,
        market_id,
        cast(open as double precision) as open,
        cast(high as double precision) as high,
        cast(low as double precision) as low,
        cast(close as double precision) as close,
        -- Null in the source means no corporate action is known: the adjustment factor is 1.
        cast(coalesce(adjusted_close, close) as double precision) as adjusted_close,
        cast(volume as double precision) as volume_shares,
        cast(shares_outstanding as double precision) as shares_outstanding,
        currency,
        source,
        cast(ingested_at as timestamp with time zone) as ingested_at

    from prices_daily

)

select * from final
