"""The `.amcp` diff-patch blob: records, writer, reader, reference applier, bucket hash, keys.

docs/patch-format.md is the specification; this module and device/runtime/src/amc_patch.c are its two
implementations, held to one truth by shared fixtures. The C runtime is the one that ships;
`apply_blob` here is the reference used to cross-check it and to build the expected results.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Union

import numpy as np

from amc.common.errors import InputError
from amc.patch.keys import DEV_SEED, crypto, public_of_seed

MAGIC = b"AMCP"
FORMAT_VERSION = 2                             # 1 (no chunk links) is refused: see docs/patch-format.md
HEADER = struct.Struct("<4sHHQIHHII")          # 32 bytes
RECORD_HEADER = struct.Struct("<BBBBIII")      # 16 bytes
HEADER_SIZE, RECORD_HEADER_SIZE, TRAILER_SIZE, LINK_SIZE = 32, 16, 96, 32
CHUNK_MIN, CHUNK_MAX = 64, 32768
DEFAULT_CHUNK = 1024                           # 3% of links; the device buffers a chunk + link
MAX_FILES = 4
NAME_MAX = 64
MAX_BLOB_BYTES = 0x7FFFFFFF

SPARSE, HASH, RAW = 1, 2, 3
HASH_SIGNED = 1
ELEMENT_TYPES = {1: "int8", 2: "int16", 4: "int32"}
_NUMPY_TYPES = {1: np.int8, 2: np.int16, 4: np.int32}
_MASK32 = 0xFFFFFFFF


# ---- records ------------------------------------------------------------------------------

@dataclass(frozen=True)
class PatchFile:
    """One target file: its name in the bundle, its size, and the sha256 before and after."""
    name: str
    size: int
    base_sha256: bytes
    new_sha256: bytes


@dataclass(frozen=True)
class SparseRecord:
    """Absolute new values at element positions of a region (re-applying it is harmless)."""
    file: int
    offset: int                  # region start, bytes, a multiple of elem_size
    length: int                  # region length, bytes
    elem_size: int               # 1 int8, 2 int16, 4 int32
    indices: tuple[int, ...]     # element indices in the region, strictly increasing
    values: tuple[int, ...]      # new values, one per index


@dataclass(frozen=True)
class HashRecord:
    """Every element of the region gets its bucket's value added, saturating (HashedNets)."""
    file: int
    offset: int
    length: int
    elem_size: int
    seed: int
    buckets: tuple[int, ...]
    signed: bool = False         # multiply by a sign taken from the hash


@dataclass(frozen=True)
class RawRecord:
    """Replace a small byte range (scales, biases, metadata)."""
    file: int
    offset: int
    data: bytes

    @property
    def length(self) -> int:
        return len(self.data)


Record = Union[SparseRecord, HashRecord, RawRecord]


@dataclass(frozen=True)
class PatchBlob:
    version: int
    files: tuple[PatchFile, ...]
    records: tuple[Record, ...]
    digest: bytes                # the root digest: sha256 of the first chunk, what is signed
    signature: bytes
    chunk_size: int = DEFAULT_CHUNK


# ---- the bucket hash (bit-exact with amc_hash_mix32 / amc_hash_index in C) ----------------

def mix32(x: int) -> int:
    """lowbias32 finalizer: the bijective 32-bit mixer the format specifies."""
    x &= _MASK32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _MASK32
    x ^= x >> 16
    return x


def hash_index(index: int, seed: int) -> int:
    """h(i) = mix32(i ^ mix32(seed)); bucket = (h * bucket_count) >> 32; sign = -1 if h & 1."""
    return mix32(index ^ mix32(seed))


def _mix32_array(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def hash_buckets(count: int, seed: int, bucket_count: int) -> tuple[np.ndarray, np.ndarray]:
    """Bucket index and sign (+1/-1) of elements 0..count-1."""
    h = _mix32_array(np.arange(count, dtype=np.uint32) ^ np.uint32(mix32(seed)))
    bucket = ((h.astype(np.uint64) * np.uint64(bucket_count)) >> np.uint64(32)).astype(np.int64)
    sign = np.where(h & np.uint32(1), -1, 1).astype(np.int64)
    return bucket, sign


# ---- keys ---------------------------------------------------------------------------------

def example_signing_key() -> bytes:
    """The development key's seed (amc.patch.keys.DEV_SEED), for tests and fixtures: it is public,
    so no device may trust a blob it signed."""
    return DEV_SEED


def public_key(seed: bytes) -> bytes:
    """The raw 32-byte Ed25519 public key of a seed (what devices hold)."""
    return public_of_seed(seed)


def _ed25519():
    return crypto()[1]


def sign_digest(seed: bytes, digest: bytes) -> bytes:
    return _ed25519().Ed25519PrivateKey.from_private_bytes(seed).sign(digest)


def verify_signature(public: bytes, digest: bytes, signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    try:
        _ed25519().Ed25519PublicKey.from_public_bytes(public).verify(signature, digest)
        return True
    except InvalidSignature:
        return False


# ---- writer -------------------------------------------------------------------------------

def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _check_region(record: Record, files: list[PatchFile], elem_size: int) -> None:
    if not 0 <= record.file < len(files):
        raise InputError(f"record names file {record.file}, the blob has {len(files)}")
    size = files[record.file].size
    if record.length <= 0 or record.offset < 0 or record.offset + record.length > size:
        raise InputError(f"record region {record.offset}+{record.length} is outside "
                         f"'{files[record.file].name}' ({size} bytes)")
    if elem_size not in ELEMENT_TYPES:
        raise InputError(f"element size {elem_size} is not one of 1, 2, 4")
    if record.offset % elem_size or record.length % elem_size:
        raise InputError(f"record region {record.offset}+{record.length} is not aligned to its "
                         f"{elem_size}-byte elements")


def _value_range(elem_size: int) -> tuple[int, int]:
    bits = 8 * elem_size
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def encode_record(record: Record, files: list[PatchFile]) -> bytes:
    if isinstance(record, SparseRecord):
        _check_region(record, files, record.elem_size)
        count = record.length // record.elem_size
        if not record.indices or len(record.indices) != len(record.values):
            raise InputError("a sparse record needs one value per index, and at least one")
        lo, hi = _value_range(record.elem_size)
        payload = bytearray(struct.pack("<I", len(record.indices)))
        previous = -1
        fmt = {1: "<b", 2: "<h", 4: "<i"}[record.elem_size]
        for index, value in zip(record.indices, record.values):
            if not previous < index < count:
                raise InputError(f"sparse indices must increase within the region ({index})")
            if not lo <= value <= hi:
                raise InputError(f"sparse value {value} does not fit {ELEMENT_TYPES[record.elem_size]}")
            payload += _varint(index - previous - 1)
            payload += struct.pack(fmt, value)
            previous = index
        head = (SPARSE, record.file, record.elem_size, 0)
    elif isinstance(record, HashRecord):
        _check_region(record, files, record.elem_size)
        lo, hi = _value_range(record.elem_size)
        if not record.buckets or any(not lo <= v <= hi for v in record.buckets):
            raise InputError(f"hash buckets must be non-empty {ELEMENT_TYPES[record.elem_size]} values")
        if record.signed and record.elem_size == 4 and lo in record.buckets:
            raise InputError("a signed int32 hash record cannot hold the bucket value -2**31")
        if not 0 <= record.seed <= _MASK32:
            raise InputError(f"hash seed {record.seed} is not a 32-bit value")
        values = np.asarray(record.buckets, dtype=_NUMPY_TYPES[record.elem_size]).astype(
            np.dtype(_NUMPY_TYPES[record.elem_size]).newbyteorder("<"))
        payload = struct.pack("<II", record.seed, len(record.buckets)) + values.tobytes()
        head = (HASH, record.file, record.elem_size, HASH_SIGNED if record.signed else 0)
    elif isinstance(record, RawRecord):
        _check_region(record, files, 1)
        payload = bytes(record.data)
        head = (RAW, record.file, 1, 0)
    else:
        raise InputError(f"unknown record type {type(record).__name__}")
    return RECORD_HEADER.pack(*head, record.offset, record.length, len(payload)) + payload


def _check_order(records: list[Record]) -> None:
    previous_file, previous_end = -1, 0
    for record in records:
        if record.file < previous_file or (record.file == previous_file
                                           and record.offset < previous_end):
            raise InputError("records must be sorted by file and offset and must not overlap "
                             f"(record at file {record.file} offset {record.offset})")
        previous_file, previous_end = record.file, record.offset + record.length


def _encode_files(files: list[PatchFile]) -> bytes:
    if not 1 <= len(files) <= MAX_FILES:
        raise InputError(f"a blob targets 1 to {MAX_FILES} files, not {len(files)}")
    out = bytearray()
    for f in files:
        name = f.name.encode()
        if not 1 <= len(name) <= NAME_MAX:
            raise InputError(f"file name '{f.name}' must be 1 to {NAME_MAX} bytes of UTF-8")
        if not 1 <= f.size <= MAX_BLOB_BYTES or len(f.base_sha256) != 32 or len(f.new_sha256) != 32:
            raise InputError(f"file '{f.name}': size or sha256 out of range")
        out += bytes([len(name)]) + name + struct.pack("<I", f.size) + f.base_sha256 + f.new_sha256
    return bytes(out)


def write_blob(files: list[PatchFile], records: list[Record], version: int,
               signing_key: bytes | None, chunk_size: int = DEFAULT_CHUNK) -> bytes:
    """Encode, chain and sign a blob. `signing_key` is the 32-byte Ed25519 seed; None leaves the
    signature empty (64 zero bytes) for a signer elsewhere (`signing_digest`, `with_signature`).
    `chunk_size`: the content bytes between links; a device needs chunk_size + 32 bytes of RAM."""
    if not 0 < version < 1 << 64:
        raise InputError(f"model version {version} must be a positive 64-bit integer")
    _check_order(records)
    body = _encode_files(files) + b"".join(encode_record(r, files) for r in records)
    header = HEADER.pack(MAGIC, FORMAT_VERSION, 0, version, HEADER_SIZE + len(body), len(files), 0,
                         len(records), chunk_size)
    return seal(header + body, signing_key, chunk_size)


def _check_chunk_size(chunk_size: int) -> None:
    if not CHUNK_MIN <= chunk_size <= CHUNK_MAX or chunk_size & (chunk_size - 1):
        raise InputError(f"chunk size {chunk_size} must be a power of two from {CHUNK_MIN} to {CHUNK_MAX}")


def seal(content: bytes, signing_key: bytes | None, chunk_size: int) -> bytes:
    """Cut the content (header, file table, records) into chunks of `chunk_size` bytes, end each
    but the last with the sha256 of the next (its link), and append the root digest (the first
    chunk's sha256) and its signature. Works backwards, so a device can check forwards."""
    _check_chunk_size(chunk_size)
    pieces = [content[i:i + chunk_size] for i in range(0, len(content), chunk_size)] or [b""]
    link = b""
    chunks = []
    for piece in reversed(pieces):
        chunk = piece + link
        chunks.append(chunk)
        link = hashlib.sha256(chunk).digest()
    length = len(content) + LINK_SIZE * (len(pieces) - 1) + TRAILER_SIZE
    if length > MAX_BLOB_BYTES:
        raise InputError(f"blob of {length} bytes exceeds the format's {MAX_BLOB_BYTES}")
    signature = sign_digest(signing_key, link) if signing_key is not None else UNSIGNED
    return b"".join(reversed(chunks)) + link + signature


def sealed_size(content_length: int, chunk_size: int = DEFAULT_CHUNK) -> int:
    """Bytes of the blob that carries `content_length` bytes of content."""
    chunks = max(1, -(-content_length // chunk_size))
    return content_length + LINK_SIZE * (chunks - 1) + TRAILER_SIZE


def content_budget(blob_bytes: int, chunk_size: int = DEFAULT_CHUNK) -> int:
    """The most content a blob of at most `blob_bytes` bytes can carry (links and trailer aside)."""
    chunks = max(1, -(-(blob_bytes - TRAILER_SIZE + LINK_SIZE) // (chunk_size + LINK_SIZE)))
    return max(min(n * chunk_size, blob_bytes - TRAILER_SIZE - LINK_SIZE * (n - 1))
               for n in (chunks - 1, chunks) if n >= 1)


def unseal(data: bytes) -> tuple[bytes, bytes, int]:
    """The content of a blob, its root digest and its chunk size, after checking every link and
    the root in the trailer (the signature is the caller's to check). Raises InputError."""
    data = bytes(data)
    if len(data) < HEADER_SIZE + TRAILER_SIZE:
        raise InputError(f"blob of {len(data)} bytes is shorter than header and trailer")
    magic, fmt = data[:4], struct.unpack_from("<H", data, 4)[0]
    if magic != MAGIC:
        raise InputError("not an amc patch blob (bad magic)")
    if fmt != FORMAT_VERSION:
        raise InputError(f"blob format version {fmt} is not supported (this amc reads {FORMAT_VERSION}; "
                         "make the blob again with this amc)")
    (length,) = struct.unpack_from("<I", data, 16)
    (chunk_size,) = struct.unpack_from("<I", data, 28)
    _check_chunk_size(chunk_size)
    if length < HEADER_SIZE:
        raise InputError(f"blob content length {length} is shorter than its header")
    count = -(-length // chunk_size)
    if len(data) != length + LINK_SIZE * (count - 1) + TRAILER_SIZE:
        raise InputError(f"blob of {len(data)} bytes does not match its content length {length} "
                         f"in chunks of {chunk_size} (truncated or extended)")
    content, expected, pos = bytearray(), None, 0
    root = None
    for i in range(count):
        size = min(chunk_size, length - i * chunk_size)
        chunk = data[pos:pos + size + (LINK_SIZE if i < count - 1 else 0)]
        digest = hashlib.sha256(chunk).digest()
        if expected is not None and digest != expected:
            raise InputError(f"blob chunk {i} does not match the link before it (corrupted)")
        root = root or digest
        content += chunk[:size]
        expected = chunk[size:]
        pos += len(chunk)
    if data[pos:pos + 32] != root:
        raise InputError("blob integrity digest mismatch (corrupted or truncated)")
    return bytes(content), root, chunk_size


UNSIGNED = bytes(64)
"""The signature field of a blob not signed yet."""


def signing_digest(data: bytes) -> bytes:
    """The exact bytes a signer signs: the blob's 32-byte integrity digest (Ed25519 over these 32
    bytes, as `openssl pkeyutl -sign -rawin` does), after checking the blob is well formed."""
    return read_blob(data).digest


def is_signed(data: bytes) -> bool:
    return bytes(data[-64:]) != UNSIGNED


def with_signature(data: bytes, signature: bytes, public: bytes) -> bytes:
    """The blob with `signature` in its trailer, after checking it verifies with `public`."""
    if len(signature) != 64:
        raise InputError(f"an Ed25519 signature is 64 bytes, this one {len(signature)}")
    digest = signing_digest(data)
    if not verify_signature(public, digest, signature):
        raise InputError("the signature does not verify with the given public key over this blob's digest")
    return bytes(data[:-64]) + signature


# ---- reader -------------------------------------------------------------------------------

class _Cursor:
    def __init__(self, data: bytes, end: int):
        self.data, self.pos, self.end = data, 0, end

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise InputError(f"blob truncated or length out of bounds reading {what} at byte {self.pos}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out


def read_blob(data: bytes, public: bytes | None = None) -> PatchBlob:
    """Parse and check a blob: every length against its bounds, the digest, and the signature
    when `public` (a 32-byte Ed25519 public key) is given. Raises InputError on any fault."""
    content, digest, chunk_size = unseal(data)
    signature = bytes(data[-64:])
    if public is not None and not verify_signature(public, digest, signature):
        raise InputError("blob signature does not verify with the given key")
    _, _, flags, version, length, nfiles, reserved16, nrecords, _ = HEADER.unpack_from(content)
    if flags or reserved16:
        raise InputError("blob has unknown flags or non-zero reserved fields")
    if not 1 <= nfiles <= MAX_FILES:
        raise InputError(f"blob targets {nfiles} files; the format allows 1 to {MAX_FILES}")
    body_end = length
    cur = _Cursor(content, body_end)
    cur.pos = HEADER_SIZE
    files = []
    for _ in range(nfiles):
        (name_len,) = cur.take(1, "file name length")
        if not 1 <= name_len <= NAME_MAX:
            raise InputError(f"file name length {name_len} out of bounds")
        name = cur.take(name_len, "file name").decode("utf-8", "replace")
        (size,) = struct.unpack("<I", cur.take(4, "file size"))
        if not 1 <= size <= MAX_BLOB_BYTES:
            raise InputError(f"file '{name}' size {size} out of bounds")
        files.append(PatchFile(name, size, cur.take(32, "base sha256"), cur.take(32, "new sha256")))
    records = [_read_record(cur, files) for _ in range(nrecords)]
    if cur.pos != body_end:
        raise InputError(f"{body_end - cur.pos} unexpected bytes before the digest")
    _check_order(records)
    return PatchBlob(version, tuple(files), tuple(records), digest, signature, chunk_size)


def _read_record(cur: _Cursor, files: list[PatchFile]) -> Record:
    kind, file, elem_size, flags, offset, length, payload_len = RECORD_HEADER.unpack(
        cur.take(RECORD_HEADER_SIZE, "record header"))
    if file >= len(files):
        raise InputError(f"record names file {file}, the blob has {len(files)}")
    if kind not in (SPARSE, HASH, RAW) or elem_size not in ELEMENT_TYPES or \
            (kind == RAW and elem_size != 1) or flags & ~(HASH_SIGNED if kind == HASH else 0):
        raise InputError(f"record kind {kind}, element size {elem_size}, flags {flags} not valid")
    size = files[file].size
    if length == 0 or offset + length > size or (offset | length) % elem_size:
        raise InputError(f"record region {offset}+{length} out of bounds of a {size}-byte file")
    payload = cur.take(payload_len, "record payload")
    if kind == RAW:
        if payload_len != length:
            raise InputError("raw record payload length differs from its region")
        return RawRecord(file, offset, payload)
    dtype = np.dtype(_NUMPY_TYPES[elem_size]).newbyteorder("<")
    if kind == HASH:
        if payload_len < 8:
            raise InputError("hash record payload too short")
        seed, count = struct.unpack_from("<II", payload)
        if count == 0 or payload_len != 8 + count * elem_size:
            raise InputError(f"hash record bucket count {count} does not match its payload")
        buckets = np.frombuffer(payload, dtype=dtype, offset=8).astype(np.int64)
        if flags & HASH_SIGNED and elem_size == 4 and (buckets == -2**31).any():
            raise InputError("a signed int32 hash record holds the forbidden bucket value -2**31")
        return HashRecord(file, offset, length, elem_size, seed, tuple(int(v) for v in buckets),
                          bool(flags & HASH_SIGNED))
    p = _Cursor(payload, payload_len)
    (count,) = struct.unpack("<I", p.take(4, "sparse count"))
    elements = length // elem_size
    if not 1 <= count <= elements:
        raise InputError(f"sparse count {count} out of bounds")
    indices, values, index = [], [], -1
    for _ in range(count):
        gap, shift = 0, 0
        while True:
            (byte,) = p.take(1, "sparse position")
            if shift > 28 or (shift == 28 and byte & 0x7F > 0x0F):
                raise InputError("sparse position varint too long")
            gap |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        index = index + 1 + gap
        if index >= elements:
            raise InputError(f"sparse position {index} outside its region of {elements} elements")
        indices.append(index)
        values.append(int(np.frombuffer(p.take(elem_size, "sparse value"), dtype=dtype)[0]))
    if p.pos != payload_len:
        raise InputError("sparse record payload has trailing bytes")
    return SparseRecord(file, offset, length, elem_size, tuple(indices), tuple(values))


# ---- reference applier --------------------------------------------------------------------

def apply_records(contents: list[bytearray], records: list[Record] | tuple[Record, ...]) -> None:
    """Apply records in order to file contents, in place (no hash checks)."""
    for record in records:
        data = contents[record.file]
        if isinstance(record, RawRecord):
            data[record.offset:record.offset + record.length] = record.data
            continue
        dtype = np.dtype(_NUMPY_TYPES[record.elem_size]).newbyteorder("<")
        region = np.frombuffer(bytes(data[record.offset:record.offset + record.length]), dtype=dtype)
        if isinstance(record, SparseRecord):
            out = region.copy()
            out[list(record.indices)] = record.values
        else:
            bucket, sign = hash_buckets(len(region), record.seed, len(record.buckets))
            delta = np.asarray(record.buckets, dtype=np.int64)[bucket]
            if record.signed:
                delta = delta * sign
            lo, hi = _value_range(record.elem_size)
            out = np.clip(region.astype(np.int64) + delta, lo, hi).astype(dtype)
        data[record.offset:record.offset + record.length] = out.astype(dtype).tobytes()


def apply_blob(blob: PatchBlob | bytes, base: dict[str, bytes],
               public: bytes | None = None) -> dict[str, bytes]:
    """Reference applier: {name: base bytes} -> {name: new bytes}, checking both sha256s."""
    if not isinstance(blob, PatchBlob):
        blob = read_blob(blob, public)
    contents = []
    for f in blob.files:
        if f.name not in base:
            raise InputError(f"blob targets '{f.name}', which is not among the base files")
        data = bytes(base[f.name])
        if len(data) != f.size or hashlib.sha256(data).digest() != f.base_sha256:
            raise InputError(f"'{f.name}' is not the base this blob applies to (sha256 differs)")
        contents.append(bytearray(data))
    apply_records(contents, blob.records)
    for f, data in zip(blob.files, contents):
        if hashlib.sha256(data).digest() != f.new_sha256:
            raise InputError(f"'{f.name}': applying gives a sha256 other than the blob promises")
    return {f.name: bytes(data) for f, data in zip(blob.files, contents)}


def make_blob(base: dict[str, bytes], records: list[Record], version: int,
              signing_key: bytes | None, chunk_size: int = DEFAULT_CHUNK) -> tuple[bytes, dict[str, bytes]]:
    """Build a blob from base files and records: computes the result files and their sha256.
    Records name files by their index in `base`'s order. Returns (blob, new files)."""
    names = list(base)
    provisional = [PatchFile(name, len(base[name]), bytes(32), bytes(32)) for name in names]
    _check_order(records)
    for record in records:                      # validate before applying
        encode_record(record, provisional)
    contents = [bytearray(base[name]) for name in names]
    apply_records(contents, records)
    files = [PatchFile(name, len(base[name]), hashlib.sha256(base[name]).digest(),
                       hashlib.sha256(data).digest()) for name, data in zip(names, contents)]
    blob = write_blob(files, records, version, signing_key, chunk_size)
    return blob, {name: bytes(data) for name, data in zip(names, contents)}


def sparse_record_from_diff(file: int, offset: int, base_region: bytes, new_region: bytes,
                            elem_size: int = 1) -> SparseRecord | None:
    """The sparse record that turns base_region into new_region (None if they are equal)."""
    dtype = np.dtype(_NUMPY_TYPES[elem_size]).newbyteorder("<")
    old = np.frombuffer(base_region, dtype=dtype)
    new = np.frombuffer(new_region, dtype=dtype)
    changed = np.nonzero(old != new)[0]
    if not len(changed):
        return None
    return SparseRecord(file, offset, len(base_region), elem_size,
                        tuple(int(i) for i in changed), tuple(int(v) for v in new[changed]))
