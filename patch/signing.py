"""Signing a blob file: in one step with a private key, or by attaching a signature made
elsewhere (an HSM, a KMS, an offline machine) over the digest `amc diff --digest-out` wrote,
checked against the signer's public key before anything is written."""

from __future__ import annotations

from pathlib import Path

from amc.common.atomic import write_file
from amc.common.errors import InputError
from amc.patch import blob as pb
from amc.patch.keys import SigningKey, fingerprint, is_development_public


def sign_blob_file(blob: Path | str, key: SigningKey | None = None, signature: bytes | None = None,
                   public: bytes | None = None, output: Path | str | None = None, resign: bool = False) -> dict:
    """Sign `blob` with `key`, or attach `signature` after checking it with `public`; the signed
    blob replaces `blob` (or goes to `output`) atomically. A blob already signed is refused
    unless `resign` (moving a blob from a development to a release key, say)."""
    blob = Path(blob)
    data = blob.read_bytes()
    digest = pb.signing_digest(data)
    if pb.is_signed(data) and not resign:
        raise InputError(f"{blob}: already signed; pass --resign to replace its signature")
    if (key is None) == (signature is None):
        raise InputError("sign with a private key (--key KEY.pem) or attach a signature made elsewhere "
                         "(--signature SIG --key SIGNER.pub), one of the two")
    if key is not None:
        public = key.public
        signature = pb.sign_digest(key.seed, digest)
    elif public is None:
        raise InputError("an external signature is checked before it is attached: give the signer's "
                         "public key with --key")
    signed = pb.with_signature(data, signature, public)
    target = Path(output) if output is not None else blob
    write_file(target, signed)
    return {"blob": str(target), "digest": digest.hex(), "signer": fingerprint(public),
            "development_key": is_development_public(public), "resigned": pb.is_signed(data)}
