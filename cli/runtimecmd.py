"""`amc runtime build|test` (the C patch runtime per board preset) and `amc patch` (apply a
blob to a bundle with that runtime)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from amc.cli.output import print_json, progress_bar, stderr, warn
from amc.common.errors import AmcError

runtime_app = typer.Typer(help="Build and test the C patch runtime for a board preset.",
                          no_args_is_help=True)


@runtime_app.command("build")
def build(
    target: str = typer.Option("host", "--target", "-t", help="Board preset (see `amc targets`)."),
    json_out: bool = typer.Option(False, "--json", help="Print paths and sizes as JSON."),
) -> None:
    """Build runtime/ for a preset; report the apply path's flash and RAM."""
    from amc.runtime.build import build_runtime
    with progress_bar(not json_out) as report:
        result = build_runtime(target, report=report)
    out = {"target": result.target, "library": str(result.library), "tests": str(result.tests),
           "cli": str(result.cli) if result.cli else None, **result.sizes}
    if json_out:
        print_json(out)
        return
    sizes = result.sizes
    typer.echo(f"{result.library}")
    typer.echo(f"apply path: text {sizes['text_bytes']} B, data {sizes['data_bytes']} B, "
               f"bss {sizes['bss_bytes']} B, worst-case stack {sizes['max_stack_bytes']} B, "
               f"state {sizes['state_bytes']} B")


@runtime_app.command("test")
def test(
    target: str = typer.Option("host", "--target", "-t", help="Board preset (see `amc targets`)."),
    json_out: bool = typer.Option(False, "--json", help="Print the suite counts as JSON."),
) -> None:
    """Build the C tests for a preset and run them (natively, qemu-user or qemu-system-arm)."""
    from amc.runtime.c_tests import test_runtime
    with progress_bar(not json_out) as report:
        result = test_runtime(target, report=report)
    if json_out:
        print_json(result.to_json())
    else:
        for name, counts in result.suites.items():
            typer.echo(f"{name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if not result.ok:
        stderr.print(result.output[-3000:], markup=False, highlight=False)
        raise AmcError(f"runtime tests failed on {result.target}")


def patch(
    bundle: Path = typer.Argument(..., exists=True, file_okay=False, dir_okay=True,
                                  help="Bundle directory (graph files + manifest.json)."),
    blob: Path = typer.Argument(..., exists=True, file_okay=True, dir_okay=False,
                                help="The .amcp patch blob."),
    key: Path = typer.Option(..., "--key", exists=True, dir_okay=False,
                             help="Ed25519 public key of the signer: PEM, or 32 raw bytes."),
    page_size: int = typer.Option(4096, "--page-size", help="Journal page size (power of two)."),
    backup_pages: int = typer.Option(4, "--backup-pages", help="Backup pages kept for rollback."),
    counter: Optional[Path] = typer.Option(None, "--counter", dir_okay=False,
                                           help="Anti-rollback counter file, outside the bundle "
                                                "(the installed version; made on first use)."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Apply a patch blob to a bundle in place with the C runtime (resumes an interrupted one)."""
    from amc.patch.keys import is_development_public, load_public_key
    from amc.runtime.apply import apply_patch
    public = load_public_key(key)
    if is_development_public(public):
        warn("trusting the DEVELOPMENT key: anyone can make blobs it accepts")
    with progress_bar(not json_out) as report:
        result = apply_patch(bundle, blob, public, report=report, page_size=page_size,
                             backup_pages=backup_pages, counter=counter)
    if json_out:
        print_json(result.to_json())
    else:
        typer.echo(f"patched {', '.join(result.files)} to model version {result.version}"
                   + (" (manifest updated)" if result.manifest_updated else ""))
