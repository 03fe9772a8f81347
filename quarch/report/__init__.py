"""quarch.report: the Pareto table and the self-contained HTML report of a study, drawn from
its `quarch.search.StudyResult` alone."""

from quarch.report._figures import (
    FIGURES,
    FigureSpec,
    format_map_figure,
    memory_figure,
    pareto_figure,
    roofline_figure,
    sensitivity_figure,
)
from quarch.report._html import redraw_report, render_html, write_report
from quarch.report._table import front_table, html_table, table_rows

__all__ = [
    "FIGURES",
    "FigureSpec",
    "format_map_figure",
    "front_table",
    "html_table",
    "memory_figure",
    "pareto_figure",
    "redraw_report",
    "render_html",
    "roofline_figure",
    "sensitivity_figure",
    "table_rows",
    "write_report",
]
