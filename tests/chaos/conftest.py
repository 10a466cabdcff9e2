"""Print the chaos table (scenario, recovery time, samples lost, duplicates) at the end of the run."""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter) -> None:
    from .harness import table
    from .test_chaos import ROWS

    if ROWS:
        terminalreporter.write_sep("-", "chaos (small sizes)")
        terminalreporter.write_line(table(ROWS))
