"""Signing keys as standard files: amc and the openssl command line read each other's keys, and
every wrong key gets a one-line error that says what to do."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from amc.common.errors import InputError
from amc.patch import blob as pb
from amc.patch import keys

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command line not installed")


def _openssl(*args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, check=True).stdout


def test_generate_writes_a_private_pkcs8_pem_once(tmp_path):
    path = tmp_path / "release.pem"
    made = keys.generate_key(path)
    text = path.read_bytes()
    assert text.startswith(b"-----BEGIN PRIVATE KEY-----") and path.stat().st_mode & 0o777 == 0o600
    loaded = keys.load_signing_key(path)
    assert loaded.public.hex() == made["public_key"] and not loaded.is_development
    with pytest.raises(InputError, match="exists; amc does not overwrite a key"):
        keys.generate_key(path)
    assert path.read_bytes() == text


def test_encrypted_key_needs_its_passphrase(tmp_path):
    path = tmp_path / "release.pem"
    keys.generate_key(path, passphrase=b"correct horse")
    assert path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(InputError, match="the key is encrypted: give its passphrase"):
        keys.load_signing_key(path)
    with pytest.raises(InputError, match="wrong passphrase"):
        keys.load_signing_key(path, b"wrong")
    assert len(keys.load_signing_key(path, b"correct horse").seed) == 32
    info = keys.key_info(path)
    assert info["encrypted"] and info["kind"] == "private" and info["public_key"] is None


def test_public_key_where_a_private_one_is_needed(tmp_path):
    private = tmp_path / "release.pem"
    keys.generate_key(private)
    public = tmp_path / "release.pub.pem"
    public.write_bytes(keys.public_key_text(keys.load_public_key(private), "pem"))
    with pytest.raises(InputError, match="holds a public key; signing needs the private key"):
        keys.load_signing_key(public)
    raw = tmp_path / "device.pub"
    raw.write_bytes(keys.load_public_key(private))
    with pytest.raises(InputError, match="32 raw bytes, read as a public key"):
        keys.load_signing_key(raw)
    assert keys.load_public_key(raw) == keys.load_public_key(public) == keys.load_public_key(private)


def test_wrong_key_type_is_named(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = tmp_path / "p256.pem"
    path.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(InputError, match="p256.pem: an ECDSA key; amc signs with Ed25519 only"):
        keys.load_signing_key(path)
    garbage = tmp_path / "notes.txt"
    garbage.write_text("not a key at all\n")
    with pytest.raises(InputError, match="notes.txt: not a key file"):
        keys.load_public_key(garbage)


def test_c_form_is_the_raw_key_as_an_array():
    public = keys.public_of_seed(bytes(range(32)))
    text = keys.public_key_text(public, "c").decode()
    assert "const uint8_t amc_patch_public_key[32] = {" in text and "amc_patch_public_key_len" in text
    values = bytes(int(v, 16) for v in text.split("{")[1].split("}")[0].replace(",", " ").split())
    assert values == public and keys.fingerprint(public) in text


def test_the_development_key_says_so():
    dev = keys.development_key()
    assert dev.is_development and keys.is_development_public(dev.public)
    assert dev.seed == pb.example_signing_key()


@needs_openssl
def test_openssl_keys_work_in_amc(tmp_path):
    private = tmp_path / "openssl.pem"
    _openssl("genpkey", "-algorithm", "ed25519", "-out", str(private))
    public = tmp_path / "openssl.pub.pem"
    _openssl("pkey", "-in", str(private), "-pubout", "-out", str(public))
    seed = keys.load_signing_key(private).seed
    assert keys.load_public_key(public) == pb.public_key(seed)
    encrypted = tmp_path / "openssl-enc.pem"
    _openssl("pkey", "-in", str(private), "-aes-256-cbc", "-passout", "pass:s3cret", "-out", str(encrypted))
    assert keys.load_signing_key(encrypted, b"s3cret").seed == seed


@needs_openssl
def test_amc_keys_work_in_openssl(tmp_path):
    private = tmp_path / "amc.pem"
    keys.generate_key(private)
    expected = keys.public_key_text(keys.load_public_key(private), "pem")
    assert _openssl("pkey", "-in", str(private), "-pubout") == expected
    encrypted = tmp_path / "amc-enc.pem"
    keys.generate_key(encrypted, passphrase=b"s3cret")
    assert _openssl("pkey", "-in", str(encrypted), "-passin", "pass:s3cret", "-pubout") == \
        keys.public_key_text(keys.load_public_key(encrypted, b"s3cret"), "pem")


@needs_openssl
def test_openssl_signs_a_blob_amc_verifies(tmp_path):
    """The external-signer flow: openssl signs the 32 bytes amc hands out, amc attaches it."""
    private = tmp_path / "release.pem"
    keys.generate_key(private)
    unsigned, _ = pb.make_blob({"f": bytes(256)}, [pb.RawRecord(0, 4, b"abcd")], 3, None)
    digest = tmp_path / "blob.digest"
    digest.write_bytes(pb.signing_digest(unsigned))
    signature = _openssl("pkeyutl", "-sign", "-rawin", "-inkey", str(private), "-in", str(digest))
    public = keys.load_public_key(private)
    signed = pb.with_signature(unsigned, signature, public)
    assert pb.read_blob(signed, public).version == 3


@needs_openssl
def test_der_keys_are_told_apart(tmp_path):
    pem = tmp_path / "k.pem"
    keys.generate_key(pem)
    der, der_pub = tmp_path / "k.der", tmp_path / "k.pub.der"
    _openssl("pkey", "-in", str(pem), "-outform", "DER", "-out", str(der))
    _openssl("pkey", "-in", str(pem), "-pubout", "-outform", "DER", "-out", str(der_pub))
    public = keys.load_public_key(pem)
    assert keys.load_public_key(der) == keys.load_public_key(der_pub) == public
    assert keys.key_info(der)["format"] == "pkcs8-der" and keys.key_info(der_pub)["format"] == "spki-der"
    with pytest.raises(InputError, match="holds a public key"):
        keys.load_signing_key(der_pub)
