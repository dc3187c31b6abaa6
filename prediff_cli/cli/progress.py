"""Rich live displays for long work: a progress bar with steps, loss, learning rate, it/s and ETA."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from prediff.cli.reporting import console


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


class TrainingDisplay:
    """A `TrainingListener` that renders training progress on the terminal."""

    def __init__(self, title: str):
        self.title = title
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
            TextColumn("ep {task.fields[epoch]}"), TextColumn("loss {task.fields[loss]}"),
            TextColumn("lr {task.fields[lr]}"), TextColumn("{task.fields[speed]} it/s"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False)
        self.task_id: Optional[int] = None

    def on_start(self, start_step: int, total_steps: int) -> None:
        self.progress.start()
        self.task_id = self.progress.add_task(self.title, total=total_steps, completed=start_step, epoch="-",
                                              loss="-", lr="-", speed="-")
        if start_step:
            self.progress.console.print(f"resuming at step {start_step} of {total_steps}")

    def on_step(self, record: dict) -> None:
        self.progress.update(self.task_id, completed=record["step"], epoch=_fmt(record.get("epoch"), ".2f"),
                             loss=_fmt(record.get("loss"), ".4g"), lr=_fmt(record.get("lr"), ".2e"),
                             speed=_fmt(record.get("it_s"), ".2f"))

    def on_validation(self, record: dict) -> None:
        parts = ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "step" and isinstance(v, float))
        self.progress.console.print(f"step {record['step']}: {parts}")

    def on_checkpoint(self, path: Path, kind: str) -> None:
        pass

    def on_end(self, result) -> None:
        self.progress.stop()


COMPILING = "compiling the networks (first call)…"


class StepsDisplay:
    """A bar for sampling and evaluation loops, shown once the amount of work is known. Until the first unit is
    done its description says that the networks are being compiled (MindSpore builds its graphs on the first
    call, which takes seconds to minutes before the bar moves):

        with StepsDisplay("denoising") as display:
            run(progress_factory=display.start)    # start(total) returns advance()
        with StepsDisplay("scoring", unit="sequences") as display:
            run(progress=display.update)           # update(done, total)
    """

    def __init__(self, title: str, unit: str = "steps"):
        self.title = title
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn(unit), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                 console=console, transient=False)
        self.task_id: Optional[int] = None

    def __enter__(self) -> "StepsDisplay":
        return self

    def __exit__(self, *exc) -> bool:
        if self.task_id is not None:
            self.progress.stop()
        return False

    def start(self, total: int, windows: int = 1):
        """Show the bar with `total` units of work; returns the callable that advances it by one unit. With
        `windows` > 1 the work is that many equal parts done one after another (the windows of a large domain),
        and the description says which one is being worked on ("denoising window 2/6")."""
        if self.task_id is None:
            self.progress.start()
            self.task_id = self.progress.add_task(COMPILING, total=total)
            self._moved, self._done = False, 0
            self._windows = max(1, int(windows))
            self._per_window = max(1, total // self._windows)
        return self.advance

    def _description(self) -> str:
        if self._windows == 1:
            return self.title
        return f"{self.title} window {min(self._done // self._per_window + 1, self._windows)}/{self._windows}"

    def _moving(self) -> None:
        if not self._moved or self._windows > 1:
            self._moved = True
            self.progress.update(self.task_id, description=self._description())

    def advance(self, n: int = 1) -> None:
        self._moving()
        self.progress.advance(self.task_id, n)
        self._done += n

    def update(self, done: int, total: int) -> None:
        self.start(total)
        if done:
            self._moving()
        self.progress.update(self.task_id, completed=done, total=total)
