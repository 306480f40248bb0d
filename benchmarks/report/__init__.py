"""Targets, plots and docs/benchmarks.md, all computed from one run's results.

``verdicts`` judges the issue's targets, ``limits`` explains the missed ones from the same run,
``sections`` renders the tables, ``figures`` the plots, and ``document`` puts the page together.
"""

from benchmarks.report.document import markdown, write
from benchmarks.report.figures import plots
from benchmarks.report.sections import padding_table, quantization_verdict
from benchmarks.report.verdicts import targets

__all__ = ["markdown", "padding_table", "plots", "quantization_verdict", "targets", "write"]
