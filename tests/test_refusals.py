"""C and Python refuse the same blobs: every check of either reader, one blob each.

Each case changes one field of a valid blob's content (or its chain, trailer or length) and
seals it again with the trusted key, so only that field is wrong. The Python reference
(`read_blob` + `apply_blob`) must raise InputError and the C runtime (`amc-patch apply`) must
exit with an AMC_E_* code, storage untouched unless the check is the final result check.
The edges just inside each bound are accepted by both.
"""

from __future__ import annotations

import hashlib
import struct
import subprocess

import numpy as np
import pytest

from amc.common.errors import InputError
from amc.patch import blob as pb
from amc.runtime.apply import host_cli
from amc.runtime.fixtures import v1_blob

KEY = pb.example_signing_key()
PUBLIC = pb.public_key(KEY)
NAMES = ("fast.pte", "slow.pte")
SIZES = (1024, 512)
ENTRY = 1 + 8 + 4 + 64                       # file table entry of an 8-byte name
TABLE = pb.HEADER_SIZE + 2 * ENTRY           # first record
rng = np.random.default_rng(17)
BASE = {name: rng.bytes(size) for name, size in zip(NAMES, SIZES)}
RECORDS = [
    pb.SparseRecord(0, 64, 128, 2, (1, 5, 63), (100, -7, 32767)),      # at TABLE
    pb.HashRecord(0, 256, 256, 4, 9, (3, -2, -2**31 + 1), True),        # signed int32
    pb.RawRecord(1, 100, b"scale!"),
]
SPARSE_LEN = 16 + 4 + 3 * (1 + 2)            # the sparse record above, header included
HASH_AT = TABLE + SPARSE_LEN
HASH_LEN = 16 + 8 + 3 * 4
RAW_AT = HASH_AT + HASH_LEN


def content() -> bytearray:
    blob, _ = pb.make_blob(dict(BASE), RECORDS, 7, KEY, 64)
    return bytearray(pb.unseal(blob)[0])


def sealed(data: bytes, chunk: int = 64) -> bytes:
    return pb.seal(bytes(data), KEY, chunk)


def field(offset: int, fmt: str, value: int) -> bytes:
    data = content()
    struct.pack_into(fmt, data, offset, value)
    return sealed(data)


def grown(extra: bytes, records: int = 0) -> bytes:
    """The content with bytes appended (and the counts that say so)."""
    data = content() + extra
    struct.pack_into("<I", data, 16, len(data))
    struct.pack_into("<I", data, 24, len(RECORDS) + records)
    return sealed(data)


def flipped(blob: bytes, at: int) -> bytes:
    return blob[:at] + bytes([blob[at] ^ 0x10]) + blob[at + 1:]


GOOD = sealed(content())
REFUSED = {
    # header
    "magic": lambda: field(0, "<4s", b"AMCQ"),
    "format version 3": lambda: field(4, "<H", 3),
    "format version 1": lambda: v1_blob(bytes(content()), KEY),
    "flags": lambda: field(6, "<H", 1),
    "content length short": lambda: field(16, "<I", len(content()) - 1),
    "content length long": lambda: field(16, "<I", len(content()) + 1),
    "content length huge": lambda: field(16, "<I", 0xFFFFFF00),
    "file count 0": lambda: field(20, "<H", 0),
    "file count 5": lambda: field(20, "<H", 5),
    "file count 1 of 2": lambda: field(20, "<H", 1),
    "reserved": lambda: field(22, "<H", 1),
    "record count +1": lambda: field(24, "<I", len(RECORDS) + 1),
    "record count -1": lambda: field(24, "<I", len(RECORDS) - 1),
    "chunk size 96": lambda: field(28, "<I", 96),
    "chunk size 32": lambda: field(28, "<I", 32),
    "chunk size 65536": lambda: field(28, "<I", 65536),
    "chunk size other than sealed": lambda: field(28, "<I", 128),
    # file table
    "name length 0": lambda: field(32, "<B", 0),
    "name length 65": lambda: field(32, "<B", 65),
    "file size 0": lambda: field(32 + 9, "<I", 0),
    "file size 2^31": lambda: field(32 + 9, "<I", 2**31),
    "file size other than on disk": lambda: field(32 + 9, "<I", SIZES[0] + 4),
    "base sha256": lambda: field(32 + 13, "<B", 0),
    "result sha256": lambda: field(32 + 13 + 32, "<B", 0),
    "file name not in bundle": lambda: field(32 + 1, "<B", ord("x")),
    # record header
    "kind 0": lambda: field(TABLE, "<B", 0),
    "kind 4": lambda: field(TABLE, "<B", 4),
    "file index 2": lambda: field(TABLE + 1, "<B", 2),
    "element size 3": lambda: field(TABLE + 2, "<B", 3),
    "element size 8": lambda: field(TABLE + 2, "<B", 8),
    "raw element size 2": lambda: field(RAW_AT + 2, "<B", 2),
    "sparse flags": lambda: field(TABLE + 3, "<B", 1),
    "hash flags 2": lambda: field(HASH_AT + 3, "<B", 3),
    "region offset misaligned": lambda: field(TABLE + 4, "<I", 65),
    "region length 0": lambda: field(TABLE + 8, "<I", 0),
    "region past the file": lambda: field(TABLE + 4, "<I", SIZES[0] - 64),
    "region offset huge": lambda: field(TABLE + 4, "<I", 0xFFFFFFF0),
    "payload length past the content": lambda: field(TABLE + 12, "<I", 0xFFFFFFF0),
    "records out of order": lambda: field(HASH_AT + 4, "<I", 0),
    "records overlap": lambda: field(HASH_AT + 4, "<I", 188),
    # record payloads
    "sparse count 0": lambda: field(TABLE + 16, "<I", 0),
    "sparse count past the region": lambda: field(TABLE + 16, "<I", 65),
    "sparse index past the region": lambda: field(TABLE + 20 + 6, "<B", 60),
    "sparse varint too long": lambda: _sparse_varint(),
    "sparse payload trailing byte": lambda: _payload_grown(TABLE, b"\0"),
    "hash bucket count 0": lambda: field(HASH_AT + 20, "<I", 0),
    "hash bucket count vs payload": lambda: field(HASH_AT + 20, "<I", 2),
    "hash bucket -2^31 signed int32": lambda: field(HASH_AT + 24 + 8, "<i", -2**31),
    "raw payload vs region": lambda: field(RAW_AT + 12, "<I", 5),
    "bytes after the last record": lambda: grown(b"\0\0\0\0"),
    # chain, trailer, length
    "first chunk": lambda: flipped(GOOD, 40),
    "a link": lambda: flipped(GOOD, 64 + 3),
    "a later chunk": lambda: flipped(GOOD, 3 * 96 + 10),
    "root digest": lambda: flipped(GOOD, len(GOOD) - 96 + 1),
    "signature": lambda: flipped(GOOD, len(GOOD) - 10),
    "unsigned": lambda: GOOD[:-64] + pb.UNSIGNED,
    "other key": lambda: pb.seal(bytes(content()), hashlib.sha256(b"other").digest(), 64),
    "truncated in a chunk": lambda: GOOD[:150],
    "truncated in the trailer": lambda: GOOD[:-1],
    "extra byte": lambda: GOOD + b"\0",
}


def _sparse_varint() -> bytes:
    """The first sparse gap as a 6-byte varint (the format allows 5)."""
    data = content()
    at = TABLE + 20
    varint = bytes([0x81, 0x80, 0x80, 0x80, 0x80, 0x00])
    data[at:at + 1] = varint
    struct.pack_into("<I", data, TABLE + 12, struct.unpack_from("<I", data, TABLE + 12)[0] + 5)
    struct.pack_into("<I", data, 16, len(data))
    return sealed(data)


def _payload_grown(record_at: int, extra: bytes) -> bytes:
    data = content()
    length = struct.unpack_from("<I", data, record_at + 12)[0]
    end = record_at + 16 + length
    data[end:end] = extra
    struct.pack_into("<I", data, record_at + 12, length + len(extra))
    struct.pack_into("<I", data, 16, len(data))
    return sealed(data)


ACCEPTED = {
    "as made": lambda: GOOD,
    "chunk size 32768": lambda: pb.make_blob(dict(BASE), RECORDS, 7, KEY, 32768)[0],
    "chunk size 64": lambda: pb.make_blob(dict(BASE), RECORDS, 7, KEY, 64)[0],
    "all in one chunk": lambda: _one_chunk(),
}


def _one_chunk() -> bytes:
    blob, _ = pb.make_blob(dict(BASE), RECORDS, 7, KEY, 64)
    length = len(pb.unseal(blob)[0])
    chunk = 1 << (length - 1).bit_length()
    return pb.make_blob(dict(BASE), RECORDS, 7, KEY, chunk)[0]


def c_apply(tmp_path, blob: bytes) -> tuple[int, str, bool]:
    """amc-patch apply on a fresh bundle: exit status, stderr, whether the files changed."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for name, data in BASE.items():
        (bundle / name).write_bytes(data)
    (tmp_path / "blob.amcp").write_bytes(blob)
    (tmp_path / "key.pub").write_bytes(PUBLIC)
    result = subprocess.run([str(host_cli()), "apply", "--dir", str(bundle), "--key", str(tmp_path / "key.pub"),
                             "--page-size", "256", str(tmp_path / "blob.amcp")],
                            capture_output=True, text=True, timeout=60)
    changed = any((bundle / name).read_bytes() != data for name, data in BASE.items())
    return result.returncode, result.stderr.strip(), changed


def python_apply(blob: bytes) -> dict[str, bytes]:
    return pb.apply_blob(blob, dict(BASE), PUBLIC)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_c_and_python_both_refuse(name, tmp_path):
    blob = REFUSED[name]()
    assert blob != GOOD
    with pytest.raises(InputError):
        python_apply(blob)
    status, stderr, changed = c_apply(tmp_path, blob)
    assert 0 < status < 128, (status, stderr)      # an AMC_E_* code, or a usage or system error
    # only the final check of the result (a signed blob promising another result) follows writes
    assert not changed or name == "result sha256", stderr


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_c_and_python_both_accept_the_edges(name, tmp_path):
    blob = ACCEPTED[name]()
    expected = python_apply(blob)
    status, stderr, changed = c_apply(tmp_path, blob)
    assert status == 0, stderr
    assert all((tmp_path / "bundle" / n).read_bytes() == data for n, data in expected.items())


def test_every_reader_check_has_a_case():
    """Each refusal in the Python reader and each error return of the C parser is counted, so a
    new check without a case here fails this test."""
    import inspect
    from pathlib import Path
    python_checks = inspect.getsource(pb.unseal) + inspect.getsource(pb.read_blob) + \
        inspect.getsource(pb._read_record)
    c_source = (Path(pb.__file__).parents[1] / "device/runtime/src/amc_patch.c").read_text()
    parser = c_source[c_source.index("/* ---- the parser"):]
    assert python_checks.count("raise InputError") <= len(REFUSED)
    assert parser.count("return -AMC_E_") <= len(REFUSED)
