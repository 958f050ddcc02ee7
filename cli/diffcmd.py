"""`amc diff`, `amc train-diff`, `amc bench diff`: neural-diff updates as patch blobs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from amc.cli.output import print_json, progress_bar, stderr

Json = typer.Option(False, "--json", help="Print the result as one JSON object.")

bench_app = typer.Typer(help="Benchmarks that recompute the tables of docs/benchmarks.md.", no_args_is_help=True)


def diff(
    base: Path = typer.Argument(..., exists=True, file_okay=False, help="The deployed bundle (amc compile)."),
    new: Path = typer.Argument(..., exists=True, help="A trained diff (amc train-diff) or a full new checkpoint."),
    out: Path = typer.Option(..., "-o", "--out", help="The .amcp blob to write."),
    budget: str = typer.Option("10%", "--budget", help="Largest blob: a share of the bundle ('10%') or bytes."),
    method: str = typer.Option("auto", "--method", help="sparse, hash or auto (checkpoints: the closer fit)."),
    key: Optional[Path] = typer.Option(None, "--key", exists=True, dir_okay=False,
                                       help="Ed25519 signing key (32 raw bytes); default: the example key."),
    bundle_out: Optional[Path] = typer.Option(None, "--bundle-out",
                                              help="Where the new bundle goes (default: OUT's stem + .bundle)."),
    version: Optional[int] = typer.Option(None, "--version", help="Model version the blob installs (default: base + 1)."),
    json_out: bool = Json,
) -> None:
    """Make the patch blob that turns BASE into the update, and the new bundle, proven equal."""
    from amc.compiler.bundle_diff import make_diff
    from amc.patch.blob import load_signing_key

    signing_key = load_signing_key(key) if key is not None else None
    with progress_bar(not json_out) as report:
        result = make_diff(base, new, out, budget=budget, method=method, signing_key=signing_key,
                           bundle_out=bundle_out, version=version, report=report)
    if json_out:
        print_json(result.to_json())
        return
    if key is None:
        stderr.print("note: signed with the example key (tests only); pass --key for a real one")
    typer.echo(f"wrote {result.blob} ({result.blob_bytes} bytes, {100 * result.blob_bytes / result.bundle_bytes:.2f}% "
               f"of the {result.bundle_bytes}-byte bundle, {result.method}) and {result.bundle}")


def train_diff(
    base: Path = typer.Argument(..., exists=True, file_okay=False, help="The deployed bundle the diff applies to."),
    data: Path = typer.Option(..., "--data", exists=True, file_okay=False,
                              help="Update folder with train/ (amc data updates, or any audio folder parent)."),
    out: Path = typer.Option(..., "-o", "--out", help="The diff file to write (.amcd)."),
    model: Optional[Path] = typer.Option(None, "--model", exists=True, file_okay=False,
                                         help="Float checkpoint of the base (default: the one its manifest names)."),
    method: str = typer.Option("sparse", "--method", help="sparse or hash."),
    budget: str = typer.Option("10%", "--budget", help="Blob budget: a share of the bundle ('10%') or bytes."),
    epochs: int = typer.Option(4, "--epochs"),
    finetune_epochs: int = typer.Option(1, "--finetune-epochs",
                                        help="Sparse: the last epochs, after the final cut, that train only the "
                                             "kept entries."),
    learning_rate: float = typer.Option(0.15, "--lr", help="Adam step, in quantization steps."),
    old_data: Optional[Path] = typer.Option(None, "--old-data", exists=True, file_okay=False,
                                            help="Old training audio folder mixed in (e.g. data/corpus/train)."),
    old_utterances: int = typer.Option(240, "--old-utterances"),
    seed: int = typer.Option(0, "--seed"),
    json_out: bool = Json,
) -> None:
    """Train a sparse or hash diff of a deployed bundle under a blob byte budget."""
    from amc.compiler.bundle_diff import train_diff_for_bundle

    with progress_bar(not json_out) as report:
        result = train_diff_for_bundle(base, data, out, model=model, method=method, budget=budget, epochs=epochs,
                                       finetune_epochs=finetune_epochs, learning_rate=learning_rate,
                                       old_data=old_data, old_utterances=old_utterances, seed=seed, report=report,
                                       log=None if json_out else (lambda entry: stderr.print(entry)))
    if json_out:
        print_json(result)
        return
    typer.echo(f"wrote {result['diff']} ({result['method']}, {result['record_bytes']} record bytes "
               f"for a {result['budget_bytes']}-byte budget)")


@bench_app.command("diff")
def bench_diff(
    updates: Path = typer.Option(Path("model/updates"), "--updates", exists=True, file_okay=False,
                                 help="The shipped updates (scenario.json and the trained diffs)."),
    base: Optional[Path] = typer.Option(None, "--base", exists=True, file_okay=False,
                                        help="The v1 bundle (default: compiled from the reference into build/)."),
    work: Path = typer.Option(Path("build/bench-diff"), "--work", help="Where blobs and bundles go."),
    retrain: bool = typer.Option(False, "--retrain", help="Retrain the shipped diffs first (into --updates)."),
    cortex_m7: Optional[Path] = typer.Option(None, "--cortex-m7", exists=True, file_okay=False,
                                             help="Also apply every sparse and hash chain bare-metal under "
                                                  "qemu-system-arm to this v1 bundle (amc compile --target cortex-m7)."),
    rpi4_board: bool = typer.Option(False, "--rpi4-board", help="Also apply every sparse and hash chain in place "
                                                                "on the emulated Pi 4 (the board's amc-patch and "
                                                                "amc-runner under qemu-aarch64)."),
    split: str = typer.Option("test", "--split", help="Score on the test sets, or on the dev sets (for tuning "
                                                      "an update recipe)."),
    only: Optional[list[str]] = typer.Option(None, "--only", help="Run only this chain (sparse-10%, hash-2%, ...; "
                                                                   "repeatable); the full retrain always runs."),
    json_out: bool = Json,
) -> None:
    """Five successive updates: CER and blob sizes per method, against generic binary diffs."""
    from amc.bench.diff import bench_diff as run

    with progress_bar(not json_out) as report:
        result = run(updates, base=base, work=work, retrain=retrain, report=report,
                     log=lambda entry: stderr.print(entry),     # each row as it is measured
                     cortex_m7=cortex_m7, rpi4_board=rpi4_board, split=split, only=tuple(only or ()))
    if json_out:
        print_json(result)
        return
    from amc.bench.diff import render_markdown
    typer.echo(render_markdown(result))
