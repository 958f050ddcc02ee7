"""`amc release BLOB --mender|--swupdate -o OUT`: a signed patch blob as a Mender artifact or an
SWUpdate image, with the golden utterance the device's health check transcribes before commit."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from amc.cli.output import print_json, stderr
from amc.common.errors import InputError

Json = typer.Option(False, "--json", help="Print the result as one JSON object.")


def golden_option(golden: Optional[Path], golden_text: Optional[str], max_cer: Optional[float]):
    """The Golden of --golden/--golden-text/--max-cer, or None; refuses a half-given one."""
    from amc.compiler.release import DEFAULT_MAX_CER, Golden

    if golden is None and golden_text is None and max_cer is None:
        return None
    if golden is None or golden_text is None:
        raise InputError("a golden utterance is --golden FILE.wav with --golden-text TEXT (and optionally --max-cer X)")
    return Golden(golden, golden_text, DEFAULT_MAX_CER if max_cer is None else max_cer)


def release(
    blob: Path = typer.Argument(..., help="The signed .amcp patch blob (amc diff, amc sign)."),
    mender: bool = typer.Option(False, "--mender", help="Write OUT.mender: a Mender artifact for the Update "
                                                        "Module amc (mender-artifact write module-image -T amc)."),
    swupdate: bool = typer.Option(False, "--swupdate", help="Write OUT.swu: an SWUpdate image for the Lua "
                                                            "handler amcp (cpio crc, sw-description first)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output file; .mender or .swu is added when missing."),
    device_type: str = typer.Option("rpi4", "--device-type", help="The Mender device type / SWUpdate board name."),
    golden: Optional[Path] = typer.Option(None, "--golden", help="Golden utterance (WAV, 16 kHz mono) the health "
                                                                  "check transcribes before commit."),
    golden_text: Optional[str] = typer.Option(None, "--golden-text", help="What the patched model must "
                                                                          "transcribe it as."),
    max_cer: Optional[float] = typer.Option(None, "--max-cer", help="Largest character error rate the check "
                                                                    "accepts, a fraction (default 0.25)."),
    hw_revision: Optional[list[str]] = typer.Option(None, "--hw-revision", help="SWUpdate hardware-compatibility "
                                                    "revision (repeatable; default any: #RE:.*)."),
    sign_key: Optional[Path] = typer.Option(None, "--sign-key", help="Sign the artifact (mender-artifact -k) or "
                                                                     "sw-description (CMS, with --sign-cert)."),
    sign_cert: Optional[Path] = typer.Option(None, "--sign-cert", help="SWUpdate: the signer's X.509 certificate "
                                                                       "(PEM); devices verify with swupdate -k."),
    json_out: bool = Json,
) -> None:
    """Package a signed .amcp blob for the OTA client a fleet runs: Mender or SWUpdate."""
    from amc.compiler.release import ANY_REVISION, build_release

    if mender == swupdate:
        raise InputError("give one of --mender or --swupdate")
    if mender and hw_revision:
        raise InputError("--hw-revision is SWUpdate's hardware compatibility; a Mender artifact depends on "
                         "--device-type alone")
    result = build_release(blob, "mender" if mender else "swupdate", output, device_type,
                           golden_option(golden, golden_text, max_cer), hw_revision or [ANY_REVISION],
                           sign_key, sign_cert)
    if json_out:
        print_json(result)
        return
    health = "golden utterance " + Path(result["golden"]["file"]).name if result["golden"] else \
        "no golden utterance (devices check with the image's)"
    stderr.print(f"wrote {result['output']}: {result['artifact_name']} for {result['device_type']} "
                 f"({result['bytes']} bytes, {health}, {'signed' if result['signed'] else 'not signed'})")
