{#-
    The body of a CTE: rolling aggregates of the CTE `relation` (one row per series and
    session_idx) over frames of sessions, each a range [T - first, T - last] of session_idx for
    the row of session T (sessions traded or not, as in panel_window.sql).

        relation     the CTE rolled over
        series       its series key, e.g. ["instrument_id"] or ["instrument_id", "factor_id"]
        columns      columns of relation carried unchanged (the series key and session_idx too)
        aggregates   [alias, function, [argument columns], first, last]: function(arguments) over
                     the series' rows of sessions T - first .. T - last (last 0: T itself), e.g.
                     ["variance_21", "var_samp", ["return_log"], 20, 0] or, the close 21
                     sessions before T (null if none), ["close_21_ago", "max", ["close"], 21, 21]
        from_offset  the first row the caller needs is that of session bounds.first_idx - from_offset
        keep_rows    point form: also return the rows before that one, their aggregates null
                     (for a caller that needs those rows' own columns, not their aggregates)

    The form is panel_rolling_form()'s. Window: window functions over every row of relation, the
    caller filters the rows it writes. Point: only the rows of sessions first_idx - from_offset
    .. last_idx, each joined with its series' rows of sessions T - max(first) .. T and grouped;
    a `case` keeps each aggregate to its own frame, so counts, nulls and values are the
    window's (to rounding: the two sum in different orders). Needs the CTE `bounds`
    (panel_bounds()) before it. Arguments are plain columns: compute expressions in relation.
-#}
{% macro rolling_aggregates(relation, series, columns, aggregates, from_offset=0, keep_rows=false) -%}
    {%- if panel_rolling_form() == "point" -%}
        {{ _rolling_aggregates_point(relation, series, columns, aggregates, from_offset, keep_rows) }}
    {%- else -%}
        {{ _rolling_aggregates_window(relation, series, columns, aggregates) }}
    {%- endif -%}
{%- endmacro %}

{% macro _rolling_frame_name(aggregate) -%}
    rolling_{{ aggregate[3] }}_{{ aggregate[4] }}
{%- endmacro %}

{% macro _rolling_aggregates_window(relation, series, columns, aggregates) -%}
    {%- set frames = [] -%}
    {%- for a in aggregates -%}
        {%- if (a[3], a[4]) not in frames -%}
            {%- do frames.append((a[3], a[4])) -%}
        {%- endif -%}
    {%- endfor %}
    select
        {%- for column in columns %}
        {{ column }},
        {%- endfor %}
        {%- for a in aggregates %}
        {{ a[1] }}({{ a[2] | join(", ") }}) over {{ _rolling_frame_name(a) }} as {{ a[0] }}{{ "," if not loop.last }}
        {%- endfor %}

    from {{ relation }}

    window
        {%- for frame in frames %}
        rolling_{{ frame[0] }}_{{ frame[1] }} as (
            partition by {{ series | join(", ") }}
            order by session_idx
            range between {{ frame[0] }} preceding and {{ "current row" if frame[1] == 0 else frame[1] ~ " preceding" }}
        ){{ "," if not loop.last }}
        {%- endfor %}
{%- endmacro %}

{% macro _rolling_aggregates_point(relation, series, columns, aggregates, from_offset, keep_rows) -%}
    {%- set reach = namespace(sessions=0) -%}
    {%- for a in aggregates -%}
        {%- set reach.sessions = [reach.sessions, a[3]] | max -%}
    {%- endfor %}
    -- the rows written (and from_offset sessions before), materialised so that the join
    -- below starts from them rather than from every row read
    with targets as materialized (

        select *
        from {{ relation }}
        where session_idx between (select first_idx from bounds) - {{ from_offset }} and (select last_idx from bounds)

    )

    select
        {%- for column in columns %}
        targets.{{ column }},
        {%- endfor %}
        {%- for a in aggregates %}
        {{ a[1] }}(
            {%- for argument in a[2] -%}
            case when history.session_idx between targets.session_idx - {{ a[3] }} and targets.session_idx - {{ a[4] }} then history.{{ argument }} end
            {{- ", " if not loop.last }}
            {%- endfor -%}
        ) as {{ a[0] }}{{ "," if not loop.last }}
        {%- endfor %}

    from targets
    inner join {{ relation }} as history
        on {% for key in series %}history.{{ key }} = targets.{{ key }}
        and {% endfor %}history.session_idx between targets.session_idx - {{ reach.sessions }} and targets.session_idx

    group by
        {%- for column in columns %}
        targets.{{ column }}{{ "," if not loop.last }}
        {%- endfor %}
    {%- if keep_rows %}

    union all

    select
        {%- for column in columns %}
        {{ column }},
        {%- endfor %}
        {%- for a in aggregates %}
        null as {{ a[0] }}{{ "," if not loop.last }}
        {%- endfor %}

    from {{ relation }}
    where session_idx < (select first_idx from bounds) - {{ from_offset }}
    {%- endif %}
{%- endmacro %}
