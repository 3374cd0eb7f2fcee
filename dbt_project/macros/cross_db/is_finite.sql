{#-
    Whether a double is a finite number: false for +inf, -inf and NaN, null for null.
    Panels use it to drop non-finite values before aggregating (one inf makes a whole
    rolling volatility inf).

    DuckDB has isfinite(double); PostgreSQL has none for double precision (only for dates and
    timestamps), but compares NaN equal to itself, so a not-in list works there.
-#}
{% macro is_finite(x) -%}
    {{ return(adapter.dispatch("is_finite", "prometheus")(x)) }}
{%- endmacro %}

{#- Standard SQL: x - x is 0 for a finite x and NaN for inf, -inf and NaN. -#}
{% macro default__is_finite(x) -%}
    (cast({{ x }} as double precision) - cast({{ x }} as double precision) = 0)
{%- endmacro %}

{% macro duckdb__is_finite(x) -%}
    isfinite(cast({{ x }} as double))
{%- endmacro %}

{% macro postgres__is_finite(x) -%}
    (cast({{ x }} as double precision) not in (
        cast('Infinity' as double precision),
        cast('-Infinity' as double precision),
        cast('NaN' as double precision)
    ))
{%- endmacro %}
