"""One progress-bar style for every long surgkit job (rich)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

console = Console(stderr=True)


class RateColumn(TextColumn):
    """Items per second, with the unit given in the task's ``unit`` field (default ``it``)."""

    def __init__(self) -> None:
        super().__init__("")

    def render(self, task):  # type: ignore[override]
        from rich.text import Text

        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "it")
        if speed is None:
            return Text(f"? {unit}/s", style="progress.data.speed")
        return Text(f"{speed:,.1f} {unit}/s", style="progress.data.speed")


def make_progress(disable: bool = False, transient: bool = False) -> Progress:
    """A rich Progress with description, bar, count, rate, elapsed and remaining time."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
        transient=transient,
    )


def track(
    items: Iterable[T],
    description: str,
    total: int | None = None,
    unit: str = "it",
    disable: bool = False,
) -> Iterator[T]:
    """Iterate with a progress bar (a thin wrapper over :func:`make_progress`)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with make_progress(disable=disable) as progress:
        task = progress.add_task(description, total=total, unit=unit)
        for item in items:
            yield item
            progress.advance(task)
