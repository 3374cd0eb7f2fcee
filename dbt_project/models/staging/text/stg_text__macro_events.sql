with

macro_events as (

    select * from {{ source("historical", "macro_events") }}

),

final as (

    select
        event_id,
        cast(session_date as date) as session_date,
        market_id,
        cast(event_at as timestamp with time zone) as event_at,
        region,
        event_type,
        name as event_name,
        cast(actual as double precision) as actual_value,
        cast(consensus as double precision) as consensus_value,
        cast(previous as double precision) as previous_value,
        cast(ingested_at as timestamp with time zone) as ingested_at

    from macro_events

)

select * from final
