"""The report: one record saved as JSON (record.py) and renderers that read only that JSON dict: Markdown, the
terminal's rich tables, HTML with plots, JUnit XML, and the row-by-row comparison of two reports (diff.py)."""

from .diff import ReportDiff, RowDiff, diff_reports, regression_lines, render_diff, render_diff_markdown
from .html import html_available, plots, render_html, write_html
from .junit import render_junit, write_junit
from .markdown import render_markdown
from .record import SCHEMA, Report, validate_report, load_report
from .rows import (
                   COLUMNS,
                   QUANT_COLUMNS,
                   UNSTABLE_P90_OVER_P50,
                   bisection_lines,
                   failure_lines,
                   latency_notes,
                   matrix_entries,
                   matrix_rows,
                   quant_rows,
                   unstable_notes,
)
from .terminal import LOW_PRIORITY, TERMINAL_COLUMNS, diff_table, fitted_table, print_table

__all__ = [
    "COLUMNS", "LOW_PRIORITY", "QUANT_COLUMNS", "SCHEMA", "TERMINAL_COLUMNS", "UNSTABLE_P90_OVER_P50",
    "Report", "ReportDiff", "RowDiff",
    "bisection_lines", "validate_report", "diff_reports", "diff_table", "failure_lines", "fitted_table", "html_available",
    "latency_notes", "load_report", "matrix_entries", "matrix_rows", "plots", "print_table", "quant_rows",
    "regression_lines", "render_diff", "render_diff_markdown", "render_html", "render_junit", "render_markdown",
    "unstable_notes", "write_html", "write_junit",
]
