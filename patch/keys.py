"""Signing keys as standard files: Ed25519 in PKCS#8 PEM (private, optionally passphrase-encrypted)
and SubjectPublicKeyInfo PEM (public), the files `openssl genpkey -algorithm ed25519` and
`openssl pkey -pubout` write and read. Devices hold raw 32-byte public keys (or the C array
`amc key public --format c` prints). Parsing is the `cryptography` package's.

The development key is a fixed, published seed: anyone can sign with it. It exists for tests
and first experiments, is used only when asked for by name (`--dev-key`), and every command that
touches it says so."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from amc.common.errors import InputError, ToolMissingError

PASSPHRASE_ENV = "AMC_KEY_PASSPHRASE"
DEV_SEED = hashlib.sha256(b"amc test signing key").digest()
"""The development key's seed: public, so never trusted by a release device."""

DEV_KEY_WARNING = ("signing with the DEVELOPMENT key: anyone can make blobs it signs; "
                   "devices must not trust it (make a release key with `amc key generate`)")
DEV_IMAGE_WARNING = ("this image trusts the DEVELOPMENT key: anyone can make blobs it accepts; "
                     "never ship it (give release keys with --key)")
PUBLIC_FORMATS = ("pem", "raw", "c")


def crypto():
    """cryptography's serialization and ed25519 modules, or a one-line install hint."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise ToolMissingError("Ed25519 keys need the Python package 'cryptography': pip install cryptography") from None
    return serialization, ed25519


@dataclass(frozen=True)
class SigningKey:
    seed: bytes                     # the 32-byte Ed25519 private key
    source: str                     # the file it came from, or "development key"

    @property
    def public(self) -> bytes:
        return public_of_seed(self.seed)

    @property
    def is_development(self) -> bool:
        return self.seed == DEV_SEED


def development_key() -> SigningKey:
    return SigningKey(DEV_SEED, "development key")


def public_of_seed(seed: bytes) -> bytes:
    serialization, ed25519 = crypto()
    return ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def is_development_public(public: bytes) -> bool:
    return public == public_of_seed(DEV_SEED)


def fingerprint(public: bytes) -> str:
    """sha256 of the raw public key, hex: what `amc key info` and `amc inspect` print."""
    return hashlib.sha256(public).hexdigest()


def generate_key(output: Path | str, passphrase: bytes | None = None) -> dict:
    """A new Ed25519 key in PKCS#8 PEM at `output` (mode 0600, written atomically; an existing file
    is refused). Encrypted with the passphrase when one is given."""
    serialization, ed25519 = crypto()
    output = Path(output)
    if output.exists():
        raise InputError(f"{output}: exists; amc does not overwrite a key (remove it first or pick another name)")
    key = ed25519.Ed25519PrivateKey.generate()
    encryption = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        os.link(staging, output)              # fails if `output` appeared meanwhile: nothing replaced
    finally:
        staging.unlink(missing_ok=True)
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"key": str(output), "algorithm": "ed25519", "format": "pkcs8-pem", "encrypted": bool(passphrase),
            "public_key": public.hex(), "fingerprint": fingerprint(public)}


def passphrase_from(path: Path | str | None) -> bytes | None:
    """The passphrase: the first line of `path`, else $AMC_KEY_PASSPHRASE, else none."""
    if path is not None:
        lines = Path(path).read_bytes().splitlines()
        if not lines or not lines[0]:
            raise InputError(f"{path}: the passphrase file is empty")
        return lines[0]
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


def _is_raw(data: bytes) -> bool:
    """32 raw bytes: the form a device holds a public key in."""
    return len(data) == 32 and not data.startswith(b"-----")


def _is_pem(data: bytes) -> bool:
    return data.lstrip().startswith(b"-----")


def _holds_private(data: bytes) -> bool:
    if _is_pem(data):
        return b"PRIVATE KEY" in data
    serialization, _ = crypto()
    try:                                     # DER carries no label: what parses as a private key is one
        serialization.load_der_private_key(data, password=None)
        return True
    except TypeError:                        # encrypted
        return True
    except ValueError:
        return False


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise InputError(f"{path}: cannot read the key: {error.strerror}") from None


def _kind_of(key) -> str:
    name = type(key).__name__.lower()
    for part, kind in (("rsa", "RSA"), ("ellipticcurve", "ECDSA"), ("ec", "ECDSA"), ("ed448", "Ed448"),
                       ("x25519", "X25519"), ("x448", "X448"), ("dsa", "DSA")):
        if part in name:
            return kind
    return type(key).__name__


def _not_ed25519(path: Path, key) -> InputError:
    return InputError(f"{path}: an {_kind_of(key)} key; amc signs with Ed25519 only "
                      f"(`amc key generate`, or `openssl genpkey -algorithm ed25519`)")


def load_signing_key(path: Path | str, passphrase: bytes | None = None) -> SigningKey:
    """The private key of a PKCS#8 PEM (or DER) file."""
    serialization, ed25519 = crypto()
    path = Path(path)
    data = _read(path)
    if _is_raw(data):
        raise InputError(f"{path}: 32 raw bytes, read as a public key (the form devices hold); signing needs "
                         f"a PKCS#8 private key (`amc key generate`)")
    if not _holds_private(data):
        raise InputError(f"{path}: holds a public key; signing needs the private key")
    try:
        if _is_pem(data):
            key = serialization.load_pem_private_key(data, password=passphrase)
        else:
            key = serialization.load_der_private_key(data, password=passphrase)
    except TypeError:
        if passphrase is None:
            raise InputError(f"{path}: the key is encrypted: give its passphrase with --passphrase-file "
                             f"or ${PASSPHRASE_ENV}") from None
        raise InputError(f"{path}: the key is not encrypted, but a passphrase was given") from None
    except ValueError as error:
        if b"ENCRYPTED" in data and passphrase is not None:
            raise InputError(f"{path}: wrong passphrase for the encrypted key") from None
        raise InputError(f"{path}: not a private key file (PKCS#8 PEM or DER): {error}") from None
    except Exception as error:                   # e.g. an unsupported algorithm
        raise InputError(f"{path}: cannot read the private key: {error}") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise _not_ed25519(path, key)
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    return SigningKey(seed, str(path))


def load_public_key(path: Path | str, passphrase: bytes | None = None) -> bytes:
    """The raw 32-byte public key of a file: a public PEM/DER key, a raw 32-byte key (the form
    devices hold), or a private key (its public half)."""
    serialization, ed25519 = crypto()
    path = Path(path)
    data = _read(path)
    if _is_raw(data):
        return data
    if _holds_private(data):
        return load_signing_key(path, passphrase).public
    try:
        if _is_pem(data):
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_der_public_key(data)
    except ValueError as error:
        raise InputError(f"{path}: not a key file (PEM, DER, or 32 raw bytes): {error}") from None
    except Exception as error:
        raise InputError(f"{path}: cannot read the public key: {error}") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise _not_ed25519(path, key)
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_text(public: bytes, form: str, name: str = "amc_patch_public_key") -> bytes:
    """The public key as firmware or tools take it: SubjectPublicKeyInfo PEM, the 32 raw bytes, or
    a C array with its length."""
    if form == "raw":
        return public
    if form == "pem":
        serialization, ed25519 = crypto()
        return ed25519.Ed25519PublicKey.from_public_bytes(public).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    if form == "c":
        rows = [", ".join(f"0x{b:02x}" for b in public[i:i + 8]) for i in range(0, len(public), 8)]
        body = ",\n    ".join(rows)
        return (f"/* Ed25519 public key, sha256 {fingerprint(public)} */\n"
                f"const uint8_t {name}[32] = {{\n    {body}\n}};\n"
                f"const size_t {name}_len = sizeof({name});\n").encode()
    raise InputError(f"unknown key format '{form}': use one of {', '.join(PUBLIC_FORMATS)}")


def key_info(path: Path | str, passphrase: bytes | None = None) -> dict:
    """What a key file holds, without needing its passphrase for the public facts of a public key."""
    path = Path(path)
    data = _read(path)
    encrypted = b"ENCRYPTED PRIVATE KEY" in data
    raw = _is_raw(data)
    private = not raw and _holds_private(data)
    encoding = "pem" if _is_pem(data) else "der"
    if raw:
        form, public = "raw-32", data
    elif private:
        form = f"pkcs8-{encoding}"
        public = load_signing_key(path, passphrase).public if not encrypted or passphrase else None
    else:
        form, public = f"spki-{encoding}", load_public_key(path)
    info = {"key": str(path), "algorithm": "ed25519", "kind": "private" if private else "public",
            "format": form, "encrypted": encrypted}
    if public is None:
        info["public_key"] = None
        info["note"] = "encrypted: give the passphrase to see the public key"
    else:
        info |= {"public_key": public.hex(), "fingerprint": fingerprint(public),
                 "development_key": is_development_public(public)}
    return info
