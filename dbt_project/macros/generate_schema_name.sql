{#-
    Use a node's custom schema verbatim: `+schema: staging` writes to `staging`, not to
    `<target schema>_staging` as dbt's default does. Nodes without one go to the target's schema.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
