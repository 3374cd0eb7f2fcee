{#-
    Generic test: `expression` holds on every row of `model`. Fails with the rows where it is
    false; rows where it is null (a null operand) pass, as in SQL's `where` semantics.

        data_tests:
          - expression_is_true:
              name: stg_market__prices_daily_high_at_least_low
              arguments:
                expression: "high >= low"

    Given on a column (`column_name`), the expression is appended to it: `expression: ">= 0"`.
-#}
{% test expression_is_true(model, expression, column_name=none) %}

with

failing as (

    select *

    from {{ model }}

    {% if column_name is none -%}
    where not ({{ expression }})
    {%- else -%}
    where not ({{ column_name }} {{ expression }})
    {%- endif %}

),

final as (

    select * from failing

)

select * from final

{% endtest %}
