with

issuers as (

    select * from {{ source("runtime", "issuers") }}

),

final as (

    select
        issuer_id,
        name as issuer_name,
        sector,
        industry,
        country,
        market_id

    from issuers

)

select * from final
