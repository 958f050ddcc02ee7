"""What every command shares: JSON on stdout, progress bars on stderr, one-line errors."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from amc.common.progress import Report

stderr = Console(stderr=True)

LIBRARY_LOGGERS = ("torch", "torchao", "executorch", "jax", "absl", "tensorflow", "onnxscript")


def quiet_libraries() -> None:
    """Keep the toolchains' Python warnings and log chatter (deprecations inside torch, executorch,
    LiteRT, ...) off the terminal: a user can act on none of them. AMC_LIBRARY_WARNINGS=1 shows them."""
    if os.environ.get("AMC_LIBRARY_WARNINGS"):
        return
    warnings.filterwarnings("ignore", module=r"(?!amc\.)")
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def warn(message: str) -> None:
    """A warning a person must see, on stderr even with --json."""
    print(f"amc: warning: {message}", file=sys.stderr)


def print_json(result: Any) -> None:
    json.dump(result, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


@contextlib.contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Report]:
    """A rich progress bar on stderr, handed to the API as a `Report` callback."""
    if not enabled or not stderr.is_terminal:
        yield lambda description, done, total: None
        return
    tasks: dict[str, Any] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=stderr, transient=True) as bar:
        def report(description: str, done: int, total: int) -> None:
            if description not in tasks:
                tasks[description] = bar.add_task(description, total=total)
            bar.update(tasks[description], completed=done, total=total)
        yield report


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send what libraries print to stdout (Python or native code) to stderr, so that stdout
    carries only the `--json` result."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
