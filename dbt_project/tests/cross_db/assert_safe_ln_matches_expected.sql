{{ config(tags=["cross_db"]) }}

{#- safe_ln: ln for x > 0, null for 0, negatives and null. Fails with the cases that differ. -#}

with

cases as (

    select *

    from (
        values
            ('one', cast(1 as double precision), cast(0 as double precision)),
            ('e', cast(2.718281828459045 as double precision), cast(1 as double precision)),
            ('ratio', cast(1.05 as double precision), cast(0.04879016416943205 as double precision)),
            ('zero', cast(0 as double precision), cast(null as double precision)),
            ('negative', cast(-1 as double precision), cast(null as double precision)),
            ('null', cast(null as double precision), cast(null as double precision))
    ) as cases (case_name, x, expected)

),

computed as (

    select
        case_name,
        x,
        expected,
        {{ safe_ln("x") }} as actual

    from cases

),

final as (

    select *

    from computed

    where
        (actual is null) <> (expected is null)
        or abs(actual - expected) > 1e-12

)

select * from final
