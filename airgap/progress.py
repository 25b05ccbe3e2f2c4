"""Progress reporting: rich bars on a terminal, a few plain lines when piped, nothing when asked.

The engine only calls :class:`Progress`; which one it gets is the CLI's decision. rich is imported
only when a terminal bar is shown: it is a tenth of a second of every piped or quiet command's start.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console


def _amount_column(inner: Any) -> Any:
    """A rich column: bytes for byte tasks (``inner``), a plain count for the images task."""
    from rich.progress import ProgressColumn, Task, TransferSpeedColumn
    from rich.text import Text

    class _Amount(ProgressColumn):
        def __init__(self, inner: ProgressColumn):
            super().__init__()
            self.inner = inner

        def render(self, task: Task) -> Text:
            if task.fields.get("unit") == "images":
                return Text("" if isinstance(self.inner, TransferSpeedColumn)
                            else f"{task.completed:.0f}/{task.total:.0f}")
            return self.inner.render(task)  # type: ignore[return-value]  # the columns we wrap all render a Text

    return _Amount(inner)


class Progress:
    """Silent base: every hook is a no-op."""

    def phase(self, label: str, total_bytes: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def images(self, total: int) -> None: ...
    def image_done(self) -> None: ...
    def note(self, message: str) -> None: ...
    def close(self) -> None: ...


class PlainProgress(Progress):
    """For logs and pipes: one line per phase, one per note, and a line every 25 %."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()
        self._label = ""
        self._total = 0
        self._done = 0
        self._next_mark = 25
        self._t0 = time.monotonic()

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def phase(self, label: str, total_bytes: int) -> None:
        with self._lock:
            self._label, self._total, self._done, self._next_mark = label, total_bytes, 0, 25
            self._t0 = time.monotonic()
        self._print(f"{label}: {human_bytes(total_bytes)}")

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self._done += nbytes
            if not self._total:
                return
            pct = self._done * 100 // self._total
            if pct < self._next_mark:
                return
            self._next_mark = (pct // 25 + 1) * 25
            elapsed = max(time.monotonic() - self._t0, 1e-6)
            rate = human_bytes(int(self._done / elapsed))
            line = f"  {self._label}: {min(pct, 100)}% ({human_bytes(self._done)}, {rate}/s)"
        self._print(line)

    def note(self, message: str) -> None:
        self._print(message)


class RichProgress(Progress):
    def __init__(self, console: Console | None = None):
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress as RichBars, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self.console = console or Console(stderr=True)
        self.bars = RichBars(TextColumn("{task.description}"), BarColumn(), _amount_column(DownloadColumn()),
                             _amount_column(TransferSpeedColumn()), TimeRemainingColumn(), console=self.console,
                             transient=False)
        self.bars.start()
        self._task: Any = None    # rich TaskIDs
        self._total = 0
        self._images: Any = None

    def images(self, total: int) -> None:
        self._images = self.bars.add_task("images", total=total or 1, unit="images")
        if not total:
            self.bars.update(self._images, completed=1)

    def image_done(self) -> None:
        if self._images is not None:
            self.bars.advance(self._images, 1)

    def phase(self, label: str, total_bytes: int) -> None:
        if self._task is not None:
            # A new phase means the last one finished: its bar ends full, at its own total (not the
            # total of whichever task was added last, such as the images count).
            self.bars.update(self._task, completed=self._total)
        self._total = total_bytes or 1
        self._task = self.bars.add_task(label, total=self._total)
        if not total_bytes:
            self.bars.update(self._task, completed=1)

    def advance(self, nbytes: int) -> None:
        if self._task is not None:
            self.bars.advance(self._task, nbytes)

    def note(self, message: str) -> None:
        self.console.print(message, highlight=False, markup=False)

    def close(self) -> None:
        self.bars.stop()


def make_progress(quiet: bool = False, stream: TextIO | None = None) -> Progress:
    stream = stream or sys.stderr
    if quiet:
        return Progress()
    if stream.isatty():
        return RichProgress()
    return PlainProgress(stream)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"
