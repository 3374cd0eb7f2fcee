{#-
    Natural log that is null where it is undefined: safe_ln(x) = ln(x) for x > 0, null for
    x <= 0 and for null x. Log returns are safe_ln(close / previous close).

    Dialects differ on non-positive input: PostgreSQL raises ("cannot take logarithm of zero"
    / "... of a negative number") and fails the whole query, DuckDB returns -inf for 0 and NaN
    for negatives, which then poison window sums silently. Every variant returns null.
-#}
{% macro safe_ln(x) -%}
    {{ return(adapter.dispatch("safe_ln", "prometheus")(x)) }}
{%- endmacro %}

{% macro default__safe_ln(x) -%}
    case when {{ x }} > 0 then ln(cast({{ x }} as double precision)) end
{%- endmacro %}

{#- DuckDB's ln never raises; the guard only turns its -inf / NaN into null. -#}
{% macro duckdb__safe_ln(x) -%}
    case when {{ x }} > 0 then ln(cast({{ x }} as double)) end
{%- endmacro %}

{#-
    PostgreSQL evaluates a CASE branch only when its condition holds (for non-constant input),
    so ln never sees x <= 0. The cast keeps the result double precision for numeric input.
-#}
{% macro postgres__safe_ln(x) -%}
    case when {{ x }} > 0 then ln(cast({{ x }} as double precision)) end
{%- endmacro %}
