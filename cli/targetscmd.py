"""`amc targets`: the board presets."""

from __future__ import annotations

import typer
from rich.table import Table

from amc.cli.output import print_json
from amc.targets.presets import PRESETS


def targets(json_out: bool = typer.Option(False, "--json", help="Print the presets as JSON.")) -> None:
    """List the board presets (CPU, toolchain, backends, QEMU machine, budgets)."""
    if json_out:
        print_json([target.to_json() for target in PRESETS.values()])
        return
    table = Table("target", "cpu", "toolchain", "backends", "qemu", "MFLOP/s", "flash/RAM")
    for t in PRESETS.values():
        budget = f"{t.flash_bytes // 1024} KiB / {t.ram_bytes // 1024} KiB" if t.flash_bytes else "-"
        table.add_row(t.name, t.cpu, t.triple or "host cc", ", ".join(t.backends),
                      " ".join(t.qemu[:3]) or "native", f"{t.mflops:g}", budget)
    from rich.console import Console
    Console().print(table)
