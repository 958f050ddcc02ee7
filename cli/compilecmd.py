"""`amc compile` and `amc inspect`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from amc.cli.output import print_json, progress_bar, stdout_to_stderr, warn


def compile(
    checkpoint: Optional[Path] = typer.Argument(
        None, help="Checkpoint directory (default: the shipped reference model).", exists=True, file_okay=False),
    target: str = typer.Option(..., "--target", "-t", help="Board preset (see `amc targets`)."),
    backend: Optional[str] = typer.Option(None, "--backend", "-b", help="executorch | tflite | onnx (default: the preset's)."),
    calib: Optional[Path] = typer.Option(
        None, "--calib", help="Calibration audio: a corpus (train/ and test/) or one audio folder "
        "(default: a small synthesized set, cached).", exists=True, file_okay=False),
    variant: str = typer.Option("int8", "--variant", help="int8, or int16x8 (TFLite: int16 activations, int8 weights)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Bundle directory (default: out/TARGET-BACKEND)."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip running the graphs in their runtimes."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Lower the branched encoder into three int8 step graphs for a board, verified in the real runtimes."""
    from amc.compiler.pipeline import compile_bundle

    with progress_bar(not json_out) as report, stdout_to_stderr():
        result = compile_bundle(checkpoint, target=target, backend=backend, calib=calib, variant=variant,
                                output=output, verify=not no_verify, report=report)
    if json_out:
        print_json(result)
        return
    print("\n".join(compile_summary(result)))


def compile_summary(result: dict) -> list[str]:
    """What a person reads after `amc compile`: where the bundle is, its sizes, how far int8 drifts
    from float, how the branches' times compare, and what to run next."""
    bundle = result["bundle"]
    graphs = " · ".join(f"{g['file']} {g['bytes']:,} B" for g in result["graphs"].values())
    lines = [f"Compiled for {result['target']} ({result['backend']}, {result['variant']})"
             + (f" in {result['compile_seconds']} s" if "compile_seconds" in result else ""),
             f"  bundle   {bundle}/  (manifest.json, report.md)",
             f"  graphs   {graphs} = {result['bundle_graph_bytes']:,} B, "
             f"{100 * result['size_ratio']:.1f}% of the float model"]
    if result.get("mcu"):
        mcu = result["mcu"]
        lines.append(f"  mcu      arena {mcu['shared_arena_bytes']:,} B + state {mcu['state_bytes']:,} B of RAM "
                     f"{mcu['ram_budget_bytes']:,} B; flash {mcu['flash_need_bytes']:,} B of {mcu['flash_budget_bytes']:,} B")
    verification = result.get("verification")
    if verification:
        accuracy = verification["accuracy"]
        if accuracy.get("utterances"):
            lines.append(f"  int8     CER {accuracy['float']['cer']:.2f}% float -> {accuracy['int8']['cer']:.2f}% int8 "
                         f"({accuracy['cer_delta']:+.2f}) on {accuracy['utterances']} utterances at "
                         f"{accuracy['mflops']:g} MFLOP/s; fast frames {accuracy['float']['fast_fraction']:.1%} -> "
                         f"{accuracy['int8']['fast_fraction']:.1%}")
        front = verification.get("frontend")
        if front:
            lines.append(f"  frontend frontend.bin: PCM -> frames in C; int8 input identical on "
                         f"{front['int8_identical_fraction']:.3%} of values (at most {front['max_step_diff']} step)"
                         + (f"; CER from PCM {front['cer_from_pcm']:.2f}% ({front['cer_delta']:+.2f})"
                            if "cer_from_pcm" in front else ""))
        snr = ", ".join(f"{g} {v['snr_db']} dB" for g, v in verification["one_frame"].items())
        lines.append(f"           one-frame SNR against float: {snr}")
        timing = verification["timing"]
        native = timing.get("native", {})
        measured = [f"{native['fast_over_slow']} in {native['runtime']}"] if "fast_over_slow" in native else []
        measured.append(f"{timing['fast_over_slow']} from Python in {timing['runtime']}")
        lines.append(f"  timing   fast/slow per frame: {', '.join(measured)}")
    else:
        lines.append("  verify   not run (--no-verify)")
    target = result["target"]
    steps = [(f"amc inspect {bundle}", "what the bundle holds, weight map included"),
             (f"amc eval {bundle} --data DIR", "CER, fast fraction and latency on an audio folder"),
             (f"amc transcribe {bundle} FILE.wav", "the text of a recording, PCM through the bundle"),
             (f"amc simulate {bundle} --data DIR --plot timeline.png", "the backlog, frame by frame"),
             (f"amc test --target {target} --bundle {bundle}", "run it on the emulated board"),
             (f"amc compile --target {target} --json", "the whole result, for scripts")]
    if target == "host":
        steps = [step for step in steps if not step[0].startswith("amc test")]
    width = max(len(command) for command, _ in steps)
    lines += ["  next"] + [f"    {command:<{width}}  {why}" for command, why in steps]
    return [line for line in lines if line]


def inspect(
    path: Path = typer.Argument(..., help="A bundle directory, a .pte/.tflite/.onnx file, or a .amcp blob.",
                                exists=True),
    key: Optional[list[Path]] = typer.Option(None, "--key", exists=True, dir_okay=False,
                                             help="A public key to check a blob's signature with (repeatable)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Summarize a bundle, a graph file (graphs, I/O, quantization, sizes, weight map) or a patch blob."""
    from amc.compiler.inspect import inspect_path
    from amc.patch.keys import load_public_key

    keyring = {str(k): load_public_key(k) for k in key or []}
    summary = inspect_path(path, keyring)
    if summary["kind"] == "patch-blob" and summary["signature"].get("development_key"):
        warn("this blob is signed with the DEVELOPMENT key: no release device may trust it")
    if json_out:
        print_json(summary)
        return
    if summary["kind"] == "patch-blob":
        print("\n".join(blob_summary(summary)))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if summary["kind"] != "bundle":
        console.print(f"{summary['path']}: {summary['kind']}, {summary['bytes']} bytes")
        for key in ("ops", "inputs", "outputs"):
            if key in summary:
                console.print(f"  {key}: {summary[key]}")
        return
    console.print(f"{summary['path']}: {summary['target']} / {summary['backend']} ({summary['variant']}), "
                  f"float model {summary['float_bytes']} bytes")
    table = Table("graph", "file", "bytes", "MACs/frame", "weights", "dtypes", "sha256")
    for name, g in summary["graphs"].items():
        table.add_row(name, g["file"], str(g["bytes"]), str(g["macs_per_frame"]),
                      f"{g['weights']['tensors']} ({g['weights']['bytes']} B)", ", ".join(g["weights"]["dtypes"]),
                      "ok" if g["sha256_ok"] else "MISMATCH")
    console.print(table)
    state = summary["state"]
    console.print(f"state ({state['dtype']}): h scale {state['h']['scale']} zp {state['h']['zero_point']}; "
                  f"c scale {state['c']['scale']} zp {state['c']['zero_point']}")
    wm = summary["weight_map"]
    console.print(f"weight map: {wm['entries']} tensors, "
                  f"{'checked against the files' if wm['checked_against_files'] else 'PROBLEMS: ' + '; '.join(wm['problems'])}")
    io = Table("graph", "tensor", "direction", "shape", "dtype", "scale", "zero point")
    for name, g in summary["graphs"].items():
        for direction in ("inputs", "outputs"):
            for t in g[direction]:
                io.add_row(name, t["name"], direction[:-1], str(t["shape"]), t["dtype"], str(t["scale"]), str(t["zero_point"]))
    console.print(io)


def blob_summary(summary: dict) -> list[str]:
    """`amc inspect BLOB.amcp` for a person."""
    signature = summary["signature"]
    if not signature["signed"]:
        signed = "unsigned (sign it: amc sign BLOB --key KEY.pem, or --signature SIG --key SIGNER.pub)"
    elif signature["valid"] is None:
        signed = "signed; not checked (give --key SIGNER.pub)"
    elif signature["valid"]:
        signed = "valid, by " + ", ".join(k["key"] for k in signature["verified_by"])
    else:
        signed = "DOES NOT VERIFY with the keys given"
    if signature.get("development_key"):
        signed += "; signed with the DEVELOPMENT key"
    lines = [f"{summary['path']}: patch blob, format {summary['format_version']}, installs model version "
             f"{summary['model_version']}, {summary['bytes']:,} bytes ({100 * summary['payload_share']:.1f}% payload)",
             f"  signature  {signed}"]
    for f in summary["files"]:
        lines.append(f"  file       {f['name']} ({f['size']:,} B)  base {f['base_sha256'][:16]}  "
                     f"result {f['result_sha256'][:16]}")
    for kind, entry in summary["records"].items():
        lines.append(f"  {kind:10s} {entry['records']} records, {entry['bytes']:,} B, over {entry['region_bytes']:,} B "
                     f"of the files")
    return lines
