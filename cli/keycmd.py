"""`amc key generate|public|info` and `amc sign`: release keys as standard files, signing in one
step or away from the blob."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from amc.cli.output import print_json, warn

key_app = typer.Typer(help="Ed25519 signing keys: make one, print its public key, describe it.",
                      no_args_is_help=True)

Json = typer.Option(False, "--json", help="Print the result as one JSON object.")
PassphraseFile = typer.Option(None, "--passphrase-file", exists=True, dir_okay=False,
                              help="File whose first line is the key's passphrase (else $AMC_KEY_PASSPHRASE).")


@key_app.command("generate")
def generate(
    output: Path = typer.Option(..., "-o", "--output", help="The private key file to write (PKCS#8 PEM)."),
    passphrase_file: Optional[Path] = PassphraseFile,
    json_out: bool = Json,
) -> None:
    """Make a new Ed25519 signing key (PKCS#8 PEM, mode 0600; encrypted when a passphrase is given)."""
    from amc.patch.keys import generate_key, passphrase_from

    result = generate_key(output, passphrase_from(passphrase_file))
    if json_out:
        print_json(result)
        return
    typer.echo(f"wrote {result['key']} (ed25519{', encrypted' if result['encrypted'] else ''}); "
               f"public key sha256 {result['fingerprint']}")
    typer.echo(f"next: amc key public {result['key']} --format pem -o {Path(result['key']).stem}.pub.pem")


@key_app.command("public")
def public(
    key: Path = typer.Argument(..., exists=True, dir_okay=False, help="A private or public key file."),
    form: str = typer.Option("pem", "--format", "-f", help="pem (SubjectPublicKeyInfo), raw (32 bytes) or c."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write here instead of stdout."),
    name: str = typer.Option("amc_patch_public_key", "--name", help="The C array's name (--format c)."),
    passphrase_file: Optional[Path] = PassphraseFile,
) -> None:
    """Print the public key in the form firmware or other tools take."""
    from amc.common.atomic import write_file
    from amc.patch.keys import is_development_public, load_public_key, passphrase_from, public_key_text

    raw = load_public_key(key, passphrase_from(passphrase_file))
    if is_development_public(raw):
        warn("this is the DEVELOPMENT key: a device that trusts it accepts blobs anyone can make")
    text = public_key_text(raw, form, name)
    if output is not None:
        write_file(output, text)
    elif form == "raw" and sys.stdout.isatty():
        raise typer.BadParameter("raw bytes do not go to a terminal: use -o FILE", param_hint="--format")
    else:
        sys.stdout.buffer.write(text)
        sys.stdout.flush()


@key_app.command("info")
def info(
    key: Path = typer.Argument(..., exists=True, dir_okay=False, help="A private or public key file."),
    passphrase_file: Optional[Path] = PassphraseFile,
    json_out: bool = Json,
) -> None:
    """What a key file holds: private or public, encrypted or not, its public key and fingerprint."""
    from amc.patch.keys import key_info, passphrase_from

    result = key_info(key, passphrase_from(passphrase_file))
    if json_out:
        print_json(result)
        return
    typer.echo(f"{result['key']}: {result['algorithm']} {result['kind']} key, {result['format']}"
               + (", encrypted" if result["encrypted"] else ""))
    if result.get("public_key"):
        typer.echo(f"  public key  {result['public_key']}")
        typer.echo(f"  sha256      {result['fingerprint']}")
        if result["development_key"]:
            typer.echo("  the DEVELOPMENT key: never trust it on a device")
    if result.get("note"):
        typer.echo(f"  {result['note']}")


def sign(
    blob: Path = typer.Argument(..., exists=True, dir_okay=False, help="The .amcp blob (amc diff --unsigned)."),
    key: Path = typer.Option(..., "--key", exists=True, dir_okay=False,
                             help="The private key to sign with; with --signature, the signer's public key."),
    signature: Optional[Path] = typer.Option(None, "--signature", exists=True, dir_okay=False,
                                             help="A 64-byte Ed25519 signature of the blob's digest, made elsewhere."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the signed blob here (default: in place)."),
    resign: bool = typer.Option(False, "--resign", help="Replace the signature of a blob already signed."),
    passphrase_file: Optional[Path] = PassphraseFile,
    json_out: bool = Json,
) -> None:
    """Sign a blob with a private key, or attach a signature made elsewhere after checking it."""
    from amc.patch.keys import DEV_KEY_WARNING, load_public_key, load_signing_key, passphrase_from
    from amc.patch.signing import sign_blob_file

    if signature is None:
        signing_key = load_signing_key(key, passphrase_from(passphrase_file))
        result = sign_blob_file(blob, key=signing_key, output=output, resign=resign)
    else:
        result = sign_blob_file(blob, signature=signature.read_bytes(), public=load_public_key(key),
                                output=output, resign=resign)
    if result["development_key"]:
        warn(DEV_KEY_WARNING)
    if json_out:
        print_json(result)
        return
    typer.echo(f"{'re-signed' if result['resigned'] else 'signed'} {result['blob']} "
               f"(signer sha256 {result['signer']})")
