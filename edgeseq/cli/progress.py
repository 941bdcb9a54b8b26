"""Rich progress bars for the matrix: one bar for the run's steps, one for the cases of the parity sweep under way."""

from __future__ import annotations

import contextlib

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


@contextlib.contextmanager
def matrix_progress(console: Console):
    """Yields the `progress` callback run_matrix / run_recipe take. Off where the console is not a terminal (CI
    logs, pipes): transient bars show nothing there, and stopping them would still leave a blank line."""
    bars = Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True,
                    disable=not console.is_terminal)
    steps = bars.add_task("starting", total=None)
    cases = bars.add_task("cases", total=None, visible=False)

    def update(event) -> None:
        done, total = getattr(event, "done", None), getattr(event, "total", None)
        message = str(event)
        if done is not None:  # the counts have their own bar
            message = message.rsplit(": ", 1)[0]
        bars.update(steps, description=message, completed=getattr(event, "step", 0),
                    total=getattr(event, "steps", None))
        if done is None or total is None:
            bars.update(cases, visible=False)
        else:
            worst = getattr(event, "worst_rel_l2", None)
            label = "parity cases" + (f" (worst rel L2 {worst:.1e})" if worst else "")
            bars.update(cases, visible=True, completed=done, total=total, description=label)

    with bars:
        yield update
