"""The progress callback every long-running API function takes: `report(description, done, total)`.
The CLI turns it into a progress bar on stderr; library callers pass their own or nothing."""

from __future__ import annotations

from typing import Callable

Report = Callable[[str, int, int], None]


def quiet(description: str, done: int, total: int) -> None:
    """The default `report`: says nothing."""
