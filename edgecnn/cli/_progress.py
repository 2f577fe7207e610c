"""Progress on stderr for every long command: a rich bar on a terminal, plain lines anywhere else.

Piped into `tee` or a CI log, a live bar prints nothing until it ends (bench ran 150 s silent), so off
a terminal each new stage is one line, and within a stage a count line at most every few seconds,
like pip and tqdm in a log. stdout stays clean for tables and --json.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

from rich.markup import escape

from edgecnn.cli._common import err_console

EVERY_S = 5.0  # off a terminal, the longest a running stage stays silent between its count lines


class Reporter:
    """What the library's callbacks call; one instance per command."""

    def __init__(self, title: str, progress=None, clock=time.monotonic):
        self.title, self._progress, self._clock = title, progress, clock
        self._task = progress.add_task(escape(title), total=None, extra="") if progress else None
        self._stage, self._said = None, -float("inf")

    def stage(self, message: str, done: int = 0, total: int | None = None, extra: str = "") -> None:
        """`message` (a stage), `done` of `total` of it so far."""
        if self._progress is not None:
            self._progress.update(
                self._task, description=escape(message), completed=done, total=total, extra=escape(extra)
            )
            return
        now = self._clock()
        new = message != self._stage
        counted = total is not None and total > 1  # a one-step stage is its name alone, said once
        if new or (counted and (done >= total or now - self._said >= EVERY_S)):
            count = f" ({done}/{total})" if counted else ""
            err_console.print(
                f"{message}{count}{f' {extra}' if extra else ''}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
            self._stage, self._said = message, now

    def step(self, message: str) -> None:
        """A stage without a count (the export and bench callbacks' `on_step`)."""
        self.stage(message)

    def count(self, done: int, total: int) -> None:
        """`done` of `total` within the current stage: the bar's count (off a terminal, a line only
        when the stage has been silent for EVERY_S)."""
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total)
        elif self._clock() - self._said >= EVERY_S:
            self.stage(self._stage or self.title, done, total)

    def tick(self, done: int, total: int) -> None:
        """The bar's count only: where each step's own line says `done/total` (bench's "measuring
        3/8: ..."), a count line off a terminal would repeat it."""
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total)

    def say(self, line: str) -> None:
        """A line that stays (an epoch's summary), above the bar on a terminal."""
        (self._progress.console if self._progress else err_console).print(
            line, highlight=False, markup=False, soft_wrap=True
        )

    def milestone(self, message: str) -> None:
        """A stage worth keeping on screen (the pipeline's results so far): a line that stays, and the
        bar's description."""
        self.say(message)
        if self._progress is not None:
            self._progress.update(self._task, description=escape(message))
        else:
            self._stage, self._said = message, self._clock()

    # The training loop's callbacks.
    def on_step(self, epoch: int, step: int, steps: int, loss: float) -> None:
        self.stage(f"{self.title} epoch {epoch + 1}", step, steps, f"loss {loss:.3f}")

    def on_epoch(self, e) -> None:
        val = f"{e.val_top1:.2f}%" if e.val_top1 is not None else "-"
        self.say(
            f"epoch {e.epoch}: loss {e.train_loss:.4f}, train top-1 {e.train_top1:.2f}%, "
            f"val top-1 {val}, {e.seconds:.0f}s"
        )

    def on_progress(self, stage: str, done: int, total: int) -> None:
        """compress's and the planner's callback."""
        self.stage(stage, done, total)


@contextmanager
def reporting(title: str):
    """A Reporter for the duration of a command: a transient bar when stderr is a terminal."""
    if not err_console.is_terminal:
        yield Reporter(title)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[extra]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as progress:
        yield Reporter(title, progress)
