{{ config(tags=["cross_db"]) }}

{#-
    safe_divide: float division (7 / 2 is 3.5 on both dialects, not PostgreSQL's 3), null for a
    zero or null denominator (not DuckDB's inf, not PostgreSQL's error). Fails with the cases
    that differ.
-#}

with

integer_cases as (

    select
        case_name,
        {{ safe_divide("numerator", "denominator") }} as actual,
        expected

    from (
        values
            ('integers', 7, 2, cast(3.5 as double precision)),
            ('integer_zero', 1, 0, cast(null as double precision)),
            ('integer_null', 1, cast(null as integer), cast(null as double precision))
    ) as cases (case_name, numerator, denominator, expected)

),

double_cases as (

    select
        case_name,
        {{ safe_divide("numerator", "denominator") }} as actual,
        expected

    from (
        values
            ('doubles', cast(-1.5 as double precision), cast(0.5 as double precision), cast(-3 as double precision)),
            ('double_zero', cast(2.5 as double precision), cast(0 as double precision), cast(null as double precision)),
            ('null_numerator', cast(null as double precision), cast(2 as double precision), cast(null as double precision))
    ) as cases (case_name, numerator, denominator, expected)

),

computed as (

    select * from integer_cases
    union all
    select * from double_cases

),

final as (

    select *

    from computed

    where
        (actual is null) <> (expected is null)
        or abs(actual - expected) > 1e-12

)

select * from final
