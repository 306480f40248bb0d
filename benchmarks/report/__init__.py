"""Targets, plots and docs/benchmarks.md, all computed from one run's results.

``targets`` judges the issue's targets, ``limits`` explains the missed ones from the same run,
``sections`` renders the tables, ``plots`` the figures, and ``document`` puts the page together.
"""

from benchmarks.report.document import markdown, write
from benchmarks.report.plots import plots
from benchmarks.report.sections import padding_table, quantization_verdict
from benchmarks.report.targets import targets

__all__ = ["markdown", "padding_table", "plots", "quantization_verdict", "targets", "write"]
