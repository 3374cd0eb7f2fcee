{#-
    Refresh the planner statistics of a relation after it was (re)written.

    PostgreSQL plans from pg_statistic: a freshly loaded table without statistics is assumed
    tiny and joins on it fall back to nested loops (measured 30x slower on the panels).
    DuckDB keeps its statistics up to date itself.
-#}
{% macro analyze_relation(relation) -%}
    {{ return(adapter.dispatch("analyze_relation", "prometheus")(relation)) }}
{%- endmacro %}

{% macro default__analyze_relation(relation) -%}
    select 1
{%- endmacro %}

{% macro postgres__analyze_relation(relation) -%}
    analyze {{ relation }}
{%- endmacro %}
