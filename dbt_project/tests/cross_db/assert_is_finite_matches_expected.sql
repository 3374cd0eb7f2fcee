{{ config(tags=["cross_db"]) }}

{#- is_finite: true for numbers, false for +inf, -inf and NaN, null for null. -#}

with

cases as (

    select *

    from (
        values
            ('number', cast(1.5 as double precision), true),
            ('zero', cast(0 as double precision), true),
            ('positive_infinity', cast('Infinity' as double precision), false),
            ('negative_infinity', cast('-Infinity' as double precision), false),
            ('not_a_number', cast('NaN' as double precision), false),
            ('null', cast(null as double precision), cast(null as boolean))
    ) as cases (case_name, x, expected)

),

computed as (

    select
        case_name,
        expected,
        {{ is_finite("x") }} as actual

    from cases

),

final as (

    select *

    from computed

    where
        (actual is null) <> (expected is null)
        or actual <> expected

)

select * from final
