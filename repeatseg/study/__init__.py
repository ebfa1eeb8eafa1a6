"""The transfer study: the paper's Table 3 grid as ordinary runs, aggregated into a report."""

from .aggregate import PAPER_TABLE3, Cell, Row, relative_contribution, summarise
from .report import write_report
from .runner import plan_cells, run_study

__all__ = ["run_study", "write_report", "plan_cells", "summarise", "relative_contribution", "Cell", "Row",
           "PAPER_TABLE3"]
