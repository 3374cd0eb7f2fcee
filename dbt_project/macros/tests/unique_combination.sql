{#-
    Generic test: no two rows of `model` share the same values of `combination_of_columns`
    (the model's grain). Fails with one row per repeated key and how often it repeats.

        data_tests:
          - unique_combination:
              arguments:
                combination_of_columns: [instrument_id, session_date]
-#}
{% test unique_combination(model, combination_of_columns) %}

{%- if combination_of_columns is string or combination_of_columns | length == 0 -%}
    {{ exceptions.raise_compiler_error(
        "unique_combination on " ~ model ~ ": combination_of_columns must be a non-empty list of columns, was "
        ~ combination_of_columns
    ) }}
{%- endif -%}

with

keyed as (

    select
        {% for column in combination_of_columns -%}
        {{ column }},
        {% endfor -%}
        count(*) as n_rows

    from {{ model }}

    group by
        {% for column in combination_of_columns -%}
        {{ column }}{{ "," if not loop.last }}
        {% endfor %}

),

final as (

    select *

    from keyed

    where n_rows > 1

)

select * from final

{% endtest %}
