{#-
    Floating-point division that is null where the denominator is 0 or null:
    safe_divide(numerator, denominator) = numerator / denominator as a double.

    Dialects differ twice: PostgreSQL divides integers as integers (7 / 2 = 3) and raises on a
    zero denominator; DuckDB divides integers as doubles (7 / 2 = 3.5) and returns +-inf on a
    zero denominator. Every variant casts to double and nulls a zero denominator.
-#}
{% macro safe_divide(numerator, denominator) -%}
    {{ return(adapter.dispatch("safe_divide", "prometheus")(numerator, denominator)) }}
{%- endmacro %}

{% macro default__safe_divide(numerator, denominator) -%}
    (cast({{ numerator }} as double precision) / nullif(cast({{ denominator }} as double precision), 0))
{%- endmacro %}

{#- DuckDB's `/` is already float division; the cast only pins the result type to double. -#}
{% macro duckdb__safe_divide(numerator, denominator) -%}
    (cast({{ numerator }} as double) / nullif({{ denominator }}, 0))
{%- endmacro %}

{#- Both operands are cast: `integer / integer` would truncate, `x / 0` would raise. -#}
{% macro postgres__safe_divide(numerator, denominator) -%}
    (cast({{ numerator }} as double precision) / nullif(cast({{ denominator }} as double precision), 0))
{%- endmacro %}
