with

instruments as (

    select * from {{ source("runtime", "instruments") }}

),

final as (

    select
        instrument_id,
        issuer_id,
        market_id,
        ticker,
        name as instrument_name,
        asset_class,
        currency,
        sector,
        industry,
        cast(listing_date as date) as listing_date,
        cast(delisting_date as date) as delisting_date,
        cast(shares_outstanding as double precision) as shares_outstanding,
        cast(lot_size as integer) as lot_size_shares,
        status as instrument_status

    from instruments

)

select * from final
