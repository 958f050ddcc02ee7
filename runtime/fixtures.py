"""Fixture packs for the C tests, written from the Python reference (`amc.patch.blob`) so both halves
are held to one truth: random blobs of every record kind with the files they must produce, blobs
each check must refuse, and the power-cut cases. The format is read by device/runtime/tests/test_patch.c."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amc.patch import blob as pb

# fixture pack case flags (device/runtime/tests/test_patch.c)
F_POWERCUT, F_BADBLOB, F_SIG_TRUSTED, F_BYTE_WRITABLE, F_MISMATCH = 1, 2, 4, 8, 16


@dataclass
class FixtureCase:
    base: list[bytes]
    new: list[bytes]
    blob: bytes
    page_size: int = 256
    backup_pages: int = 4
    flags: int = F_SIG_TRUSTED
    expect_error: int = 0            # 0 with expect_ok; else the negated AMC_E_ code (0 = any)
    expect_ok: bool = True
    min_version: int = 0
    bucket_buf_size: int = 0         # 0: the test's default (4096); at most its BUCKET_BYTES
    chunk_buf_log2: int = 0          # chunk buffer of 2^k + 32 bytes; 0: the largest chunk's
    trusted: bytes | None = None     # digest + signature the trusted key made (default: the blob's)

    def encode(self) -> bytes:
        out = bytearray(bytes([int(self.expect_ok), len(self.base), self.flags, self.chunk_buf_log2]))
        out += struct.pack("<IIIiQ", self.page_size, self.backup_pages, self.bucket_buf_size,
                           self.expect_error, self.min_version)
        for base, new in zip(self.base, self.new):
            out += struct.pack("<I", len(base)) + base + new
        trusted = self.trusted if self.trusted is not None else self.blob[-pb.TRAILER_SIZE:]
        trusted = trusted.rjust(pb.TRAILER_SIZE, b"\0")[:pb.TRAILER_SIZE]
        return bytes(out + struct.pack("<I", len(self.blob)) + self.blob + trusted)


def write_pack(path: Path, cases: list[FixtureCase], public: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        out.write(b"AMCT" + struct.pack("<II", 1, len(cases)) + public)
        for case in cases:
            out.write(case.encode())
    return path


GRAPH_NAMES = ("fast.pte", "slow.pte", "arbitrator.pte")


def random_records(rng: np.random.Generator, sizes: list[int], kinds: tuple[str, ...]) -> list:
    """Non-overlapping region records in file/offset order, of the given kinds."""
    records = []
    for file, size in enumerate(sizes):
        cuts = sorted(set(int(c) & ~3 for c in rng.integers(0, size, size=int(rng.integers(2, 9)))))
        for start, end in zip(cuts[:-1], cuts[1:]):
            if end - start < 8 or rng.random() < 0.3:
                continue
            kind = kinds[int(rng.integers(len(kinds)))]
            if kind == "raw":
                length = int(min(end - start, rng.integers(1, 65)))
                records.append(pb.RawRecord(file, start, rng.bytes(length)))
                continue
            esz = int(rng.choice([1, 1, 2, 4]))
            length = (end - start) // esz * esz
            if length == 0:
                continue
            lo, hi = -(1 << (8 * esz - 1)), (1 << (8 * esz - 1)) - 1
            if kind == "sparse":
                count = length // esz
                n = int(max(1, count * rng.uniform(0.01, 0.25)))
                idx = np.sort(rng.choice(count, size=n, replace=False))
                values = rng.integers(lo, hi + 1, size=n)
                records.append(pb.SparseRecord(file, start, length, esz, tuple(map(int, idx)),
                                               tuple(map(int, values))))
            else:
                nb = int(rng.integers(1, 65))
                spread = hi if rng.random() < 0.2 else min(hi, 8)   # some saturate hard
                buckets = rng.integers(max(lo, -spread), spread + 1, size=nb)
                records.append(pb.HashRecord(file, start, length, esz, int(rng.integers(0, 2**32)),
                                             tuple(map(int, buckets)), bool(rng.random() < 0.5)))
    return records


CHUNK_SIZES = (64, 128, 256, 1024, 4096)


def random_case(rng: np.random.Generator, kinds: tuple[str, ...], key: bytes,
                max_size: int = 6000, nfiles: int | None = None,
                chunk_size: int | None = None) -> FixtureCase:
    nfiles = nfiles or int(rng.integers(1, 4))
    sizes = [int(rng.integers(200, max_size)) for _ in range(nfiles)]
    base = {GRAPH_NAMES[i]: rng.bytes(sizes[i]) for i in range(nfiles)}
    records = []
    while not records:
        records = random_records(rng, sizes, kinds)
    version = int(rng.integers(1, 1000))
    chunk_size = chunk_size or int(rng.choice(CHUNK_SIZES))
    blob, new = pb.make_blob(base, records, version, key, chunk_size)
    page = int(rng.choice([64, 128, 256, 512, 1024]))
    flags = F_SIG_TRUSTED | (F_BYTE_WRITABLE if rng.random() < 0.25 else 0)
    return FixtureCase(list(base.values()), list(new.values()), blob, page_size=page,
                       backup_pages=int(rng.integers(1, 6)), flags=flags,
                       min_version=version - 1 if rng.random() < 0.5 else 0)


def _resign(content: bytes, key: bytes, chunk_size: int | None = None) -> bytes:
    """Chain and sign hand-made content (header, file table, records: malformed but signed), in
    the chunk size its header names unless told another."""
    return pb.seal(content, key, chunk_size or struct.unpack_from("<I", content, 28)[0])


def reject_cases(rng: np.random.Generator, key: bytes, max_size: int = 6000) -> list[FixtureCase]:
    """Blobs a device must refuse, each with the error it must give, storage unchanged."""
    E = {"FORMAT": 2, "BOUNDS": 3, "TRUNCATED": 4, "DIGEST": 5, "SIGNATURE": 6, "BASE": 7,
         "VERSION": 8, "NOMEM": 9, "IO": 10}
    # chunks of 64 bytes, so that a header naming another length still fills the first chunk
    good = random_case(rng, ("sparse", "hash", "raw"), key, max_size=max_size, nfiles=2, chunk_size=64)
    parsed = pb.read_blob(good.blob)
    body = bytearray(pb.unseal(good.blob)[0])
    first_record = pb.HEADER_SIZE + sum(1 + len(f.name) + 68 for f in parsed.files)
    cases = []

    def case(blob: bytes, error: str, **kw) -> None:
        fields = dict(base=good.base, new=good.base, blob=blob, page_size=good.page_size,
                      backup_pages=good.backup_pages, expect_ok=False, expect_error=-E[error])
        fields.update(kw)
        cases.append(FixtureCase(**fields))

    def mutated(offset: int, fmt: str, value: int) -> bytes:
        b = bytearray(body)
        struct.pack_into(fmt, b, offset, value)
        return _resign(bytes(b), key, 64)

    wrong_base = [bytearray(b) for b in good.base]
    wrong_base[1][len(wrong_base[1]) // 2] ^= 0x40
    case(good.blob, "BASE", base=[bytes(b) for b in wrong_base], new=[bytes(b) for b in wrong_base])
    other_key = hashlib.sha256(b"not the device's key").digest()
    case(_resign(bytes(body), other_key), "SIGNATURE", flags=0)
    case(good.blob, "VERSION", min_version=parsed.version)           # replay of the same
    case(good.blob, "VERSION", min_version=parsed.version + 10)      # an older version
    case(good.blob[:-1], "TRUNCATED")
    case(good.blob + b"\0", "FORMAT", trusted=good.blob[-pb.TRAILER_SIZE:])
    case(good.blob[:40] + bytes([good.blob[40] ^ 1]) + good.blob[41:], "DIGEST")
    link = 64 + 5                                                    # a byte of the first link
    case(good.blob[:link] + bytes([good.blob[link] ^ 1]) + good.blob[link + 1:], "DIGEST")
    case(v1_blob(body, key), "FORMAT")                              # format version 1: refused
    case(mutated(28, "<I", 96), "FORMAT")                            # chunk size not a power of two
    case(mutated(28, "<I", 32), "FORMAT")                            # chunk size below 64
    wide = bytearray(body)
    struct.pack_into("<I", wide, 28, 128)
    case(_resign(bytes(wide), key), "NOMEM", chunk_buf_log2=6)        # no room for a chunk
    case(_resign(b"AMCX" + bytes(body[4:]), key), "FORMAT")         # magic
    case(mutated(4, "<H", 3), "FORMAT")                              # format version
    case(mutated(6, "<H", 1), "FORMAT")                              # unknown flag
    case(mutated(16, "<I", 0xFFFFFF00), "BOUNDS")                    # content length
    case(mutated(20, "<H", 5), "BOUNDS")                             # file count
    case(mutated(24, "<I", 0xFFFFFFFF), "BOUNDS")                    # record count: runs into the digest
    case(mutated(pb.HEADER_SIZE, "<B", 0), "BOUNDS")                 # empty file name
    name_len = len(parsed.files[0].name)
    case(mutated(pb.HEADER_SIZE + 1 + name_len, "<I", 0x7FFFFFFF), "IO")  # file larger than storage
    rh = first_record
    case(mutated(rh + 12, "<I", 0xFFFFFFF0), "BOUNDS")               # payload length
    case(mutated(rh + 8, "<I", 0x7FFFFFF0), "BOUNDS")                # region length
    case(mutated(rh + 4, "<I", 0xFFFFFFF0), "BOUNDS")                # region offset
    case(mutated(rh + 1, "<B", 3), "BOUNDS")                         # file index
    case(mutated(rh + 0, "<B", 9), "FORMAT")                         # record kind
    case(mutated(rh + 2, "<B", 3), "FORMAT")                         # element size
    # a hash record whose buckets do not fit the device's bucket buffer
    hashed = {GRAPH_NAMES[0]: rng.bytes(2048)}
    blob, _ = pb.make_blob(hashed, [pb.HashRecord(0, 0, 2048, 1, 5, tuple(range(100)))], 3, key, 64)
    cases.append(FixtureCase(list(hashed.values()), list(hashed.values()), blob, expect_ok=False,
                             expect_error=-E["NOMEM"], bucket_buf_size=64))
    # sparse count larger than the region, and records out of order
    sparse = {GRAPH_NAMES[0]: rng.bytes(1024)}
    blob, _ = pb.make_blob(sparse, [pb.SparseRecord(0, 0, 64, 1, (1, 2), (5, 6))], 3, key)
    b = bytearray(pb.unseal(blob)[0])
    rh = pb.HEADER_SIZE + 1 + len(GRAPH_NAMES[0]) + 68
    struct.pack_into("<I", b, rh + 16, 65)
    cases.append(FixtureCase(list(sparse.values()), list(sparse.values()), _resign(bytes(b), key),
                             expect_ok=False, expect_error=-E["BOUNDS"]))
    two = [pb.RawRecord(0, 100, b"ab"), pb.RawRecord(0, 10, b"cd")]
    unsorted = bytearray(pb.unseal(pb.write_blob([pb.PatchFile(GRAPH_NAMES[0], 1024, b"\0" * 32, b"\0" * 32)],
                                                 two[:1], 3, key))[0])
    struct.pack_into("<I", unsorted, 24, 2)
    struct.pack_into("<I", unsorted, 16, len(unsorted) + 18)
    unsorted += pb.RECORD_HEADER.pack(3, 0, 1, 0, 10, 2, 2) + b"cd"
    base0 = sparse[GRAPH_NAMES[0]]
    struct.pack_into("32s", unsorted, pb.HEADER_SIZE + 1 + len(GRAPH_NAMES[0]) + 4,
                     hashlib.sha256(base0).digest())
    cases.append(FixtureCase([base0], [base0], _resign(bytes(unsorted), key), expect_ok=False,
                             expect_error=-E["FORMAT"]))
    for c in cases:
        if c.expect_error != -E["SIGNATURE"]:
            c.flags |= F_SIG_TRUSTED
    return cases


def v1_blob(content: bytes, key: bytes) -> bytes:
    """The same content in format version 1: no chunk links, one digest over it all."""
    v1 = bytearray(content)
    struct.pack_into("<H", v1, 4, 1)
    struct.pack_into("<I", v1, 16, len(v1) + pb.TRAILER_SIZE)
    struct.pack_into("<I", v1, 28, 0)
    digest = hashlib.sha256(v1).digest()
    return bytes(v1) + digest + pb.sign_digest(key, digest)


def write_fixture_packs(out_dir: Path, seed: int = 2026, crosscheck_cases: int = 300,
                        max_size: int = 6000) -> dict[str, Path]:
    """The packs the C tests read: crosscheck, reject, powercut, badblob. `max_size` bounds the
    random graph files (in bytes; the power-cut cases take at most 3000)."""
    rng = np.random.default_rng(seed)
    key = pb.example_signing_key()
    public = pb.public_key(key)
    kinds = [("sparse",), ("hash",), ("raw",), ("sparse", "hash", "raw")]
    cross = [random_case(rng, kinds[i % 4], key, max_size=max_size) for i in range(crosscheck_cases)]
    for case in cross:       # the Python reference agrees before C is asked
        names = GRAPH_NAMES[:len(case.base)]
        assert pb.apply_blob(case.blob, dict(zip(names, case.base)), public) == dict(zip(names, case.new))
    power = []
    for i, (kinds_i, page, backup, writable) in enumerate(
            [(("sparse", "hash", "raw"), 256, 4, 0), (("hash",), 128, 1, 0),
             (("sparse", "raw"), 512, 2, F_BYTE_WRITABLE), (("hash", "sparse"), 64, 3, 0),
             (("sparse", "hash", "raw"), 1024, 2, 0), (("hash",), 256, 8, F_BYTE_WRITABLE)]):
        case = random_case(rng, kinds_i, key, max_size=min(3000, max_size), nfiles=1 + i % 3)
        case.page_size, case.backup_pages = page, backup
        case.flags = F_SIG_TRUSTED | F_POWERCUT | F_MISMATCH | writable
        power.append(case)
    small = {GRAPH_NAMES[0]: rng.bytes(700), GRAPH_NAMES[1]: rng.bytes(300)}
    blob, new = pb.make_blob(small, [pb.SparseRecord(0, 64, 256, 1, (3, 40, 41, 200), (1, 2, 3, -4)),
                                     pb.HashRecord(0, 320, 128, 2, 77, (3, -2, 9), True),
                                     pb.RawRecord(1, 16, b"scale")], 5, key)
    bad = [FixtureCase(list(small.values()), list(new.values()), blob, page_size=128,
                       flags=F_SIG_TRUSTED | F_BADBLOB)]
    return {
        "crosscheck": write_pack(out_dir / "crosscheck.pack", cross, public),
        "reject": write_pack(out_dir / "reject.pack", reject_cases(rng, key, max_size), public),
        "powercut": write_pack(out_dir / "powercut.pack", power, public),
        "badblob": write_pack(out_dir / "badblob.pack", bad, public),
    }


# The small packs checked into device/runtime/tests/fixtures/, so that the runtime builds and
# tests with cmake and ctest alone (device/runtime/README.md). About 100 KiB in all.
STANDALONE_PACKS = dict(crosscheck_cases=16, max_size=400)
HASH_VECTOR_SEEDS = (0, 1, 0xDEADBEEF, 0xFFFFFFFF)
HASH_VECTOR_INDICES = (0, 1, 2, 1000, 0x7FFFFFFF, 0xFFFFFFFF)


def write_hash_vectors(path: Path) -> Path:
    """`amc_hash_index` of the Python reference, in the lines `amc_patch_tests --hash-vectors`
    prints (seeds outer, indices inner)."""
    lines = [f"hash index={i} seed={s} value={pb.hash_index(i, s)}\n"
             for s in HASH_VECTOR_SEEDS for i in HASH_VECTOR_INDICES]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))
    return path


def write_standalone_fixtures(out_dir: Path) -> dict[str, Path]:
    """The fixtures ctest runs in device/runtime: small packs of every suite and the hash vectors."""
    files = write_fixture_packs(out_dir, **STANDALONE_PACKS)
    files["hash_vectors"] = write_hash_vectors(out_dir / "hash_vectors.txt")
    return files


def cached_fixture_packs(out_dir: Path, crosscheck_cases: int = 300) -> dict[str, Path]:
    """The fixture packs, regenerated only when the code that writes them changed."""
    sources = [Path(pb.__file__), Path(__file__)]
    stamp = hashlib.sha256(b"".join(p.read_bytes() for p in sources) +
                           str(crosscheck_cases).encode()).hexdigest()
    names = ("crosscheck", "reject", "powercut", "badblob")
    packs = {name: out_dir / f"{name}.pack" for name in names}
    stamp_file = out_dir / "fixtures.stamp"
    if stamp_file.exists() and stamp_file.read_text() == stamp and all(p.exists() for p in packs.values()):
        return packs
    packs = write_fixture_packs(out_dir, crosscheck_cases=crosscheck_cases)
    stamp_file.write_text(stamp)
    return packs


def write_bench_pack(out_dir: Path, size: int = 1 << 20, seed: int = 7) -> Path:
    """Throughput fixtures: a 1 MiB graph file patched by a hash diff over all of it, by a
    sparse diff touching 10% of its bytes, and by a sparse diff touching 1%."""
    rng = np.random.default_rng(seed)
    key = pb.example_signing_key()
    base = {GRAPH_NAMES[0]: rng.bytes(size)}
    old = np.frombuffer(base[GRAPH_NAMES[0]], dtype=np.int8)
    cases = []
    hashed = [pb.HashRecord(0, 0, size, 1, 11, tuple(int(v) for v in rng.integers(-4, 5, 256)), True)]
    for records in (hashed,
                    [pb.sparse_record_from_diff(0, 0, base[GRAPH_NAMES[0]], _sparse_new(rng, old, 0.10))],
                    [pb.sparse_record_from_diff(0, 0, base[GRAPH_NAMES[0]], _sparse_new(rng, old, 0.01))]):
        blob, new = pb.make_blob(base, records, 2, key)
        cases.append(FixtureCase(list(base.values()), list(new.values()), blob, page_size=4096,
                                 backup_pages=4, flags=F_SIG_TRUSTED))
    return write_pack(out_dir / "bench.pack", cases, pb.public_key(key))


def _sparse_new(rng: np.random.Generator, old: np.ndarray, density: float) -> bytes:
    new = old.copy()
    idx = rng.choice(len(old), size=int(len(old) * density), replace=False)
    new[idx] = (new[idx].astype(np.int16) + rng.choice([-3, -2, -1, 1, 2, 3], size=len(idx))).clip(-128, 127)
    return new.tobytes()


if __name__ == "__main__":
    # python -m amc.runtime.fixtures --write device/runtime/tests/fixtures
    import argparse

    parser = argparse.ArgumentParser(description="Write the fixtures the C runtime's ctest reads.")
    parser.add_argument("--write", type=Path, required=True, metavar="DIR",
                        help="folder for the packs and hash_vectors.txt")
    for name, path in write_standalone_fixtures(parser.parse_args().write).items():
        print(f"{name} {path} {path.stat().st_size} bytes")
