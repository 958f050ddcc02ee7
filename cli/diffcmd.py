"""`amc diff`, `amc train-diff`, `amc bench diff`: neural-diff updates as patch blobs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from amc.cli.output import print_json, progress_bar, stderr, warn

Json = typer.Option(False, "--json", help="Print the result as one JSON object.")

bench_app = typer.Typer(help="Benchmarks that recompute the tables of docs/benchmarks.md.", no_args_is_help=True)


def diff(
    base: Path = typer.Argument(..., exists=True, file_okay=False, help="The deployed bundle (amc compile)."),
    new: Path = typer.Argument(..., exists=True, help="A trained diff (amc train-diff) or a full new checkpoint."),
    out: Path = typer.Option(..., "-o", "--out", help="The .amcp blob to write."),
    budget: str = typer.Option("10%", "--budget", help="Largest blob: a share of the bundle ('10%') or bytes."),
    method: str = typer.Option("auto", "--method", help="sparse, hash or auto (checkpoints: the closer fit)."),
    key: Optional[Path] = typer.Option(None, "--key", exists=True, dir_okay=False,
                                       help="Ed25519 private key to sign with (PKCS#8 PEM: amc key generate)."),
    dev_key: bool = typer.Option(False, "--dev-key", help="Sign with the public development key (never for devices)."),
    unsigned: bool = typer.Option(False, "--unsigned", help="Leave the signature empty, to sign elsewhere (amc sign)."),
    digest_out: Optional[Path] = typer.Option(None, "--digest-out",
                                              help="Write the 32 bytes to sign here (with --unsigned)."),
    passphrase_file: Optional[Path] = typer.Option(None, "--passphrase-file", exists=True, dir_okay=False,
                                                   help="The key's passphrase, first line (else $AMC_KEY_PASSPHRASE)."),
    bundle_out: Optional[Path] = typer.Option(None, "--bundle-out",
                                              help="Where the new bundle goes (default: OUT's stem + .bundle)."),
    version: Optional[int] = typer.Option(None, "--version", help="Model version the blob installs (default: base + 1)."),
    chunk_size: int = typer.Option(1024, "--chunk-size",
                                   help="Bytes between the blob's hash links (64..32768, a power of two); "
                                        "the device buffers one chunk + 32 bytes."),
    json_out: bool = Json,
) -> None:
    """Make the patch blob that turns BASE into the update, and the new bundle, proven equal."""
    from amc.common.atomic import write_file
    from amc.common.errors import InputError
    from amc.compiler.bundle_diff import make_diff
    from amc.patch.blob import signing_digest
    from amc.patch.keys import DEV_KEY_WARNING, development_key, load_signing_key, passphrase_from

    if (key is not None) + dev_key + unsigned != 1:
        raise InputError("amc diff signs only with a key you name: --key release.pem, --dev-key (development "
                         "only) or --unsigned (then amc sign), one of the three")
    if digest_out is not None and not unsigned:
        raise InputError("--digest-out goes with --unsigned: a signed blob needs no external signer")
    signing_key = development_key() if dev_key else load_signing_key(key, passphrase_from(passphrase_file)) \
        if key is not None else None
    if signing_key is not None and signing_key.is_development:
        warn(DEV_KEY_WARNING)
    with progress_bar(not json_out) as report:
        result = make_diff(base, new, out, budget=budget, method=method,
                           signing_key=signing_key.seed if signing_key is not None else None,
                           bundle_out=bundle_out, version=version, chunk_size=chunk_size, report=report)
    if digest_out is not None:
        write_file(digest_out, signing_digest(result.blob.read_bytes()))
    if json_out:
        print_json(result.to_json() | {"signed": signing_key is not None,
                                       "digest_out": str(digest_out) if digest_out else None})
        return
    typer.echo(f"wrote {result.blob} ({result.blob_bytes} bytes, {100 * result.blob_bytes / result.bundle_bytes:.2f}% "
               f"of the {result.bundle_bytes}-byte bundle, {result.method}) and {result.bundle}")
    if signing_key is None:
        typer.echo(f"unsigned: sign the digest{f' in {digest_out}' if digest_out else ''} elsewhere, then "
                   f"amc sign {result.blob} --signature SIG --key SIGNER.pub")


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

    warn("amc bench diff signs its blobs with the DEVELOPMENT key: they are measurements, not releases")
    with progress_bar(not json_out) as report:
        result = run(updates, base=base, work=work, retrain=retrain, report=report,
                     log=lambda entry: stderr.print(entry),     # each row as it is measured
                     cortex_m7=cortex_m7, rpi4_board=rpi4_board, split=split, only=tuple(only or ()))
    if json_out:
        print_json(result)
        return
    from amc.bench.diff import render_markdown
    typer.echo(render_markdown(result))
