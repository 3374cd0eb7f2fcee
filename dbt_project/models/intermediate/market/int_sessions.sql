-- The market's trading sessions up to max_date, numbered in order (session_idx).
-- Sessions are the dates that have prices: the ingestion `sessions` check (ERROR, blocking)
-- guarantees every calendar session of an ingested range has rows.
--
-- A table, not a view like the other intermediate models: every panel reads it two or three
-- times, and as a view each read was a distinct over all prices (~0.2 s each on PostgreSQL,
-- seconds per one-session build). It depends on the run's max_date, so each run rebuilds it
-- (2,500 rows for ten years), as it did the view; PostgreSQL plans the panels' reads of it
-- from fresh statistics.
{{ config(materialized="table", post_hook="{{ analyze_relation(this) }}") }}

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
