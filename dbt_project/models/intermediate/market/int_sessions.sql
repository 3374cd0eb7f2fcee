-- The market's trading sessions up to max_date, numbered in order (session_idx).
-- Sessions are the dates that have prices: the ingestion `sessions` check (ERROR, blocking)
-- guarantees every calendar session of an ingested range has rows.
with

prices as (

    select * from {{ ref("stg_market__prices_daily") }}

),

sessions as (

    select distinct session_date
    from prices
    where market_id = {{ panel_market_id() }}
      and session_date <= {{ panel_max_date() }}

),

final as (

    select
        session_date,
        cast(row_number() over (order by session_date) as integer) as session_idx

    from sessions

)

select * from final
