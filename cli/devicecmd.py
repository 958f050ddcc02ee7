"""`amc test --target T` (prove a bundle on the board's CPU under QEMU) and `amc image --target T`
(the device-image overlay)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from amc.cli.output import print_json, progress_bar, stderr, stdout_to_stderr, warn
from amc.common.errors import InputError

Target = typer.Option(..., "--target", "-t", help="Board preset (see `amc targets`).")
Bundle = typer.Option(None, "--bundle", exists=True, file_okay=False,
                      help="Compiled bundle (default: out/<target>-<backend>, compiled when missing).")
Json = typer.Option(False, "--json", help="Print the result as one JSON object.")


def test(
    target: str = Target,
    bundle: Optional[Path] = Bundle,
    backend: Optional[str] = typer.Option(None, help="Backend of the default bundle (default: the preset's)."),
    data: Optional[Path] = typer.Option(None, "--data", exists=True, file_okay=False,
                                        help="Audio folder to stream (default: the calibration corpus's test split)."),
    utterances: int = typer.Option(4, min=1, help="Utterances streamed end to end on the board."),
    records: int = typer.Option(96, min=1, help="Recorded inputs each graph runs on the board."),
    mflops: Optional[float] = typer.Option(None, min=0.001, help="Processor speed for the backlog (default: the model's nominal)."),
    patch: bool = typer.Option(True, "--patch/--no-patch", help="Apply a weight update with amc-patch on the board."),
    system: bool = typer.Option(False, "--system", help="Boot the emulated Pi 4 (Debian arm64, systemd) and run "
                                                        "everything there, the patch by the boot unit after a reboot."),
    power_cuts: int = typer.Option(0, "--power-cuts", min=0, help="With --system: kill QEMU this many times during "
                                                                  "the boot unit's apply and boot again."),
    json_out: bool = Json,
) -> None:
    """Run the bundle on the target's CPU under QEMU and compare with the host's runtime; for a
    microcontroller, run it in TFLite Micro and compare with LiteRT."""
    from amc.ontarget.harness import Settings, test_on_target

    settings = Settings(utterances=utterances, records_per_graph=records, mflops=mflops, patch=patch)
    with progress_bar(not json_out) as report, stdout_to_stderr():
        result = test_on_target(target, bundle, backend, data, settings, report=report, system=system,
                                power_cuts=power_cuts)
    if json_out:
        print_json(result)
    else:
        _summary(result)
    if not result.get("ok", False):
        raise typer.Exit(1)


def _summary(result: dict) -> None:
    stderr.print(f"{result['target']}: {result.get('emulator', result.get('interpreters', ''))}")
    if result.get("booted"):
        stderr.print(f"  booted {result['system']} in {result['boot_seconds']} s ({result['init']} as init); "
                     f"boot unit: {result['boot_unit']}")
    if "arena" in result:
        short = [g for g, a in result["arena"]["graphs"].items() if not a["fits"]]
        stderr.print(f"  arenas: every graph runs in the shared {result['arena']['shared_bytes']} bytes; "
                     + (f"too small on its own: {', '.join(short)}" if short else "each in its own too"))
    stderr.print(f"  graphs: {result['outputs_compared']} output values compared, "
                 f"largest difference {result['max_int8_step_diff']} int8 steps")
    if "max_kernel_step_diff" in result:
        for kernels, steps in result["max_kernel_step_diff"].items():
            stderr.print(f"  kernels on equal inputs, LiteRT {kernels.replace('_', ' ')}: largest difference "
                         f"{steps} steps ({', '.join(result['kernels_differing'][kernels]) or 'none differ'})")
    if "transcripts_equal" in result:
        stderr.print(f"  streaming: {result['utterances']} utterances, {result['frames']} frames, "
                     f"transcripts equal: {result['transcripts_equal']}, routes equal: {result['routes_equal']}")
    patch = result.get("patch") or {}
    if "skipped" in patch:
        stderr.print(f"  patch: skipped ({patch['skipped']})")
    elif patch:
        where = f"by {patch['applied_by']}" if "applied_by" in patch else "on the board"
        stderr.print(f"  patch: {patch['blob_bytes']} byte blob applied {where}, "
                     f"equal to the new bundle: {patch['patched_equal']}")
    ota = result.get("ota")
    if ota:
        stderr.print("  OTA installs (a tampered blob refused, then an update committed after its health check): "
                     + ", ".join(f"{client} {ota[client]}" for client in ota if client != "details"))
    cuts = result.get("power_cuts")
    if cuts:
        stderr.print(f"  power cuts: {cuts['tried']} tried, {cuts['corrupted']} corrupted, "
                     f"{cuts['rolled_back']} rolled back on request, at most {cuts['boots_needed']['max']} boots")
    stderr.print("ok" if result.get("ok") else "FAILED")


def image(
    target: str = Target,
    output: Path = typer.Option(..., "-o", "--output", help="Overlay directory, or a .tar.gz file."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", exists=True, file_okay=False,
                                          help="Compiled bundle (default: out/<target>-<default backend>)."),
    key: Optional[list[Path]] = typer.Option(None, "--key", exists=True, dir_okay=False,
                                             help="Ed25519 public key devices trust (PEM, DER or 32 raw bytes); "
                                                  "repeat for a keyring. Written to etc/amc/keys/."),
    dev_key: bool = typer.Option(False, "--dev-key", help="Trust the development key too (anyone can sign with "
                                                          "it): for development images only."),
    golden: Optional[Path] = typer.Option(None, "--golden", help="The image's golden utterance (WAV) for the OTA "
                                                                  "health check of updates that carry none."),
    golden_text: Optional[str] = typer.Option(None, "--golden-text", help="What the model must transcribe it as."),
    max_cer: Optional[float] = typer.Option(None, "--max-cer", help="Largest character error rate the check "
                                                                    "accepts, a fraction (default 0.25)."),
    golden_data: Optional[Path] = typer.Option(None, "--golden-data", help="Without --golden: the audio folder to "
                                               "pick it from (default: the calibration corpus's test split)."),
    json_out: bool = Json,
) -> None:
    """Write the device-image overlay: bundle, runtime, amc-patch, amc-runner, boot unit, OTA client
    module and handler, keyring, sha256 manifest."""
    from amc.cli.releasecmd import golden_option
    from amc.compiler.image import build_image
    from amc.compiler.pipeline import default_output
    from amc.patch.keys import DEV_IMAGE_WARNING
    from amc.targets.presets import get_target

    if bundle is None:
        preset = get_target(target)
        bundle = default_output(preset.name, preset.default_backend)
        if not (bundle / "manifest.json").is_file():
            raise InputError(f"no bundle at {bundle}: run `amc compile --target {preset.name}` or pass --bundle")
    if dev_key:
        warn(DEV_IMAGE_WARNING)
    if golden is not None and golden_data is not None:
        raise InputError("--golden-data is where a golden utterance is picked when --golden gives none: "
                         "give one of them")
    with progress_bar(not json_out) as report:
        result = build_image(target, bundle, output, key or [], dev_key, report=report,
                             golden=golden_option(golden, golden_text, max_cer), golden_data=golden_data)
    if json_out:
        print_json(result)
    else:
        stderr.print(f"wrote {result['output']}: {result['file_count']} files for {result['target']}")
