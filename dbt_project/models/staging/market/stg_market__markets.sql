with

markets as (

    select * from {{ source("runtime", "markets") }}

),

final as (

    select
        market_id,
        name as market_name,
        calendar_code,
        timezone as timezone_name,
        currency,
        asset_class,
        region,
        cast(pre_open_minutes as integer) as pre_open_minutes,
        cast(post_close_minutes as integer) as post_close_minutes,
        cast(is_primary as boolean) as is_primary

    from markets

)

select * from final
