"""The .amcp format in Python: writer/reader round trip, bounds checks, reference applier,
bucket hash vectors, signing."""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import pytest

from amc.common.errors import InputError
from amc.patch import blob as pb

KEY = pb.example_signing_key()
PUBLIC = pb.public_key(KEY)

# (index, seed) -> amc_hash_index, the same table the C runtime prints with --hash-vectors
HASH_VECTORS = {(0, 0): 0, (1, 0): 1753845952, (2, 0): 3507691905}


def _bundle(rng: np.random.Generator) -> dict[str, bytes]:
    return {"fast.pte": rng.bytes(3000), "slow.pte": rng.bytes(5000), "arbitrator.pte": rng.bytes(500)}


def _records() -> list:
    return [pb.SparseRecord(0, 16, 800, 1, (0, 5, 300), (1, -2, 127)),
            pb.HashRecord(0, 1024, 1000, 2, 7, (1, -3, 100, 5), True),
            pb.HashRecord(1, 0, 400, 4, 9, (2**31 - 1, -5), False),
            pb.RawRecord(1, 1000, b"scale"),
            pb.SparseRecord(2, 0, 500, 1, tuple(range(0, 500, 7)), tuple([3] * 72))]


def test_round_trip_and_reference_apply():
    base = _bundle(np.random.default_rng(0))
    blob, new = pb.make_blob(base, _records(), 7, KEY)
    parsed = pb.read_blob(blob, PUBLIC)
    assert parsed.version == 7
    assert [f.name for f in parsed.files] == list(base)
    assert parsed.records == tuple(_records())
    assert pb.apply_blob(blob, base, PUBLIC) == new
    assert [hashlib.sha256(new[f.name]).digest() for f in parsed.files] == \
        [f.new_sha256 for f in parsed.files]


def test_sparse_values_are_absolute_so_reapplying_is_harmless():
    base = {"fast.pte": bytes(64)}
    record = pb.SparseRecord(0, 0, 64, 1, (3, 9), (-7, 42))
    once = [bytearray(base["fast.pte"])]
    pb.apply_records(once, [record])
    twice = [bytearray(once[0])]
    pb.apply_records(twice, [record])
    assert once == twice


def test_hash_record_saturates():
    base = {"g": bytes([120, 0x88, 0, 5]) * 4}                 # 120 and -120 among them
    record = pb.HashRecord(0, 0, 16, 1, 3, (100,), False)
    out = [bytearray(base["g"])]
    pb.apply_records(out, [record])
    values = np.frombuffer(bytes(out[0]), dtype=np.int8)
    assert values.max() == 127 and values.min() == -20


def test_hash_vectors():
    for (index, seed), value in HASH_VECTORS.items():
        assert pb.hash_index(index, seed) == value
    bucket, sign = pb.hash_buckets(3, 0, 16)
    assert list(bucket) == [(v * 16) >> 32 for v in HASH_VECTORS.values()]
    assert list(sign) == [1 if v % 2 == 0 else -1 for v in HASH_VECTORS.values()]


def test_sparse_record_from_diff():
    old = bytes(range(100))
    new = bytearray(old)
    new[10], new[90] = 0, 1
    record = pb.sparse_record_from_diff(0, 0, old, bytes(new))
    assert record.indices == (10, 90) and record.values == (0, 1)
    assert pb.sparse_record_from_diff(0, 0, old, old) is None


@pytest.mark.parametrize("cut", [0, 10, 31, 32, 100, -97, -1])
def test_truncated_blob_is_one_line_input_error(cut):
    base = _bundle(np.random.default_rng(1))
    blob, _ = pb.make_blob(base, _records(), 2, KEY)
    with pytest.raises(InputError) as err:
        pb.read_blob(blob[:cut])
    assert "\n" not in str(err.value)


def test_every_bit_flip_of_a_small_blob_is_rejected():
    base = {"fast.pte": bytes(300)}
    blob, _ = pb.make_blob(base, [pb.RawRecord(0, 4, b"ab")], 2, KEY)
    for bit in range(len(blob) * 8):
        flipped = bytearray(blob)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(InputError):
            pb.read_blob(bytes(flipped), PUBLIC)


def test_wrong_key_and_wrong_base():
    base = _bundle(np.random.default_rng(2))
    blob, _ = pb.make_blob(base, _records(), 2, KEY)
    other = pb.public_key(hashlib.sha256(b"other").digest())
    with pytest.raises(InputError, match="signature"):
        pb.read_blob(blob, other)
    wrong = dict(base, **{"slow.pte": b"\0" + base["slow.pte"][1:]})
    with pytest.raises(InputError, match="not the base"):
        pb.apply_blob(blob, wrong)


def test_oversized_lengths_are_rejected_even_when_signed():
    base = {"fast.pte": bytes(256)}
    blob, _ = pb.make_blob(base, [pb.RawRecord(0, 0, b"x")], 2, KEY)
    body = bytearray(pb.unseal(blob)[0])
    record_header = pb.HEADER_SIZE + 1 + len("fast.pte") + 68
    for offset, value in [(record_header + 12, 0xFFFFFFF0), (record_header + 8, 0x7FFFFFF0),
                          (record_header + 4, 0xFFFFFFF0), (24, 0xFFFF)]:
        mutated = bytearray(body)
        struct.pack_into("<I", mutated, offset, value)
        with pytest.raises(InputError):
            pb.read_blob(pb.seal(bytes(mutated), KEY, pb.DEFAULT_CHUNK), PUBLIC)


@pytest.mark.parametrize("record", [
    pb.SparseRecord(0, 0, 64, 1, (5, 5), (1, 2)),               # not increasing
    pb.SparseRecord(0, 0, 64, 1, (70,), (1,)),                  # outside the region
    pb.SparseRecord(0, 0, 64, 1, (1,), (300,)),                 # does not fit int8
    pb.SparseRecord(0, 1, 64, 2, (1,), (3,)),                   # misaligned int16 region
    pb.HashRecord(0, 0, 64, 4, 1, (-2**31,), True),             # unnegatable int32 bucket
    pb.HashRecord(0, 0, 64, 1, 1, (), False),                   # no buckets
    pb.RawRecord(0, 250, b"0123456789"),                        # past the end of the file
])
def test_writer_rejects_bad_records(record):
    with pytest.raises(InputError):
        pb.make_blob({"fast.pte": bytes(256)}, [record], 2, KEY)


def test_writer_rejects_overlapping_and_unsorted_records():
    with pytest.raises(InputError, match="sorted"):
        pb.make_blob({"f": bytes(256)}, [pb.RawRecord(0, 10, b"ab"), pb.RawRecord(0, 11, b"c")], 2, KEY)
    with pytest.raises(InputError, match="sorted"):
        pb.make_blob({"f": bytes(256)}, [pb.RawRecord(0, 20, b"ab"), pb.RawRecord(0, 1, b"c")], 2, KEY)


def test_unsigned_blob_then_signed_elsewhere():
    base = {"f": bytes(256)}
    unsigned, _ = pb.make_blob(base, [pb.RawRecord(0, 10, b"ab")], 2, None)
    assert not pb.is_signed(unsigned)
    with pytest.raises(InputError, match="signature does not verify"):
        pb.read_blob(unsigned, pb.public_key(KEY))
    digest = pb.signing_digest(unsigned)
    assert digest == unsigned[-96:-64]
    signed = pb.with_signature(unsigned, pb.sign_digest(KEY, digest), pb.public_key(KEY))
    assert pb.is_signed(signed) and pb.read_blob(signed, pb.public_key(KEY)).version == 2
    assert signed == pb.make_blob(base, [pb.RawRecord(0, 10, b"ab")], 2, KEY)[0]
    other = pb.sign_digest(bytes(range(32)), digest)
    with pytest.raises(InputError, match="does not verify with the given public key"):
        pb.with_signature(unsigned, other, pb.public_key(KEY))

