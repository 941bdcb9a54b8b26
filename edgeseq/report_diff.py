"""`edgeseq.report_diff` is edgeseq.report.diff: the name importers outside the report package still use."""

from .report.diff import ReportDiff, RowDiff, diff_reports, regression_lines, render_diff, render_diff_markdown

__all__ = ["ReportDiff", "RowDiff", "diff_reports", "regression_lines", "render_diff", "render_diff_markdown"]
