"""Build, test and measure the C patch runtime (runtime/) for a board preset.

`amc runtime build --target T` and `amc runtime test --target T` call `build_runtime` and
`test_runtime`. The C tests read fixture packs that this module writes from the Python
reference (`amc.patch.blob`), so both halves are held to one truth. Natively on the
host, under qemu-user for the Raspberry Pi presets, bare-metal under qemu-system-arm with
semihosting for the Cortex-M presets. Build outputs go under build/runtime/<target>/.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from amc.common.errors import AmcError, InputError, ToolMissingError
from amc.common.paths import build_root, device_sources
from amc.common.progress import Report, quiet
from amc.patch import blob as pb
from amc.targets.cross_libs import cross_library
from amc.targets.presets import Target, get_target

RUNTIME_DIR = device_sources("runtime")
BUILD_ROOT = build_root() / "runtime"
TOOLCHAIN_FILES = {
    "aarch64-linux-gnu": "toolchain-aarch64-linux-gnu.cmake",
    "arm-linux-gnueabihf": "toolchain-arm-linux-gnueabihf.cmake",
    "arm-none-eabi": "toolchain-arm-none-eabi.cmake",
}
APT_HINT = {
    "": "gcc",
    "aarch64-linux-gnu": "gcc-aarch64-linux-gnu",
    "arm-linux-gnueabihf": "gcc-arm-linux-gnueabihf",
    "arm-none-eabi": "gcc-arm-none-eabi libnewlib-arm-none-eabi",
}
# fixture pack case flags (runtime/tests/test_patch.c)
F_POWERCUT, F_BADBLOB, F_SIG_TRUSTED, F_BYTE_WRITABLE = 1, 2, 4, 8




def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ToolMissingError(f"'{tool}' not found: apt-get install {package}")
    return path


def _run(cmd: list[str], cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AmcError(f"'{' '.join(cmd[:3])} ...' took more than {timeout:.0f} s") from None


# ---- build ------------------------------------------------------------------------------------

@dataclass
class RuntimeBuild:
    target: str
    build_dir: Path
    library: Path
    tests: Path
    cli: Path | None
    sizes: dict = field(default_factory=dict)
    signature: str = ""              # how the C tests and amc-patch check signatures
    cli_missing: str = ""            # why amc-patch was not built, when it was not

    def to_json(self) -> dict:
        out = asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in out.items()}


def build_dir(target: Target, variant: str = "") -> Path:
    return BUILD_ROOT / (target.name + (f"-{variant}" if variant else ""))


def build_runtime(target_name: str, variant: str = "", report: Report = quiet) -> RuntimeBuild:
    """Configure and build runtime/ for a preset (variant: '' | 'asan' | 'fuzz' | 'large'); sizes
    too. 'large': the bare-metal test program with room for a whole bundle (1.5 MiB of files, a
    256 KiB blob and as much bucket buffer), its buffers in the mps2-an500 board's PSRAM (cortex-m7)."""
    target = get_target(target_name)
    if variant == "large" and (target.linux or target.qemu[2] != "mps2-an500"):
        raise InputError(f"the large runtime build needs the mps2-an500 board's PSRAM (cortex-m7), "
                         f"not {target.name}'s")
    _need("cmake", "cmake")
    compiler = f"{target.triple}-gcc" if target.triple else "cc"
    if variant == "fuzz":
        compiler = "clang"
        _need("clang", "clang libclang-rt-14-dev")
    else:
        _need(compiler, APT_HINT[target.triple])
    out = build_dir(target, variant)
    report(f"build runtime for {target.name}", 0, 2)
    cmd = ["cmake", "-S", str(RUNTIME_DIR), "-B", str(out), "-DCMAKE_BUILD_TYPE=Release",
           f"-DAMC_TARGET_CFLAGS={' '.join(target.cflags)}"]
    if target.triple:
        cmd.append(f"-DCMAKE_TOOLCHAIN_FILE={RUNTIME_DIR / 'cmake' / TOOLCHAIN_FILES[target.triple]}")
    if not target.linux:
        cmd.append(f"-DAMC_QEMU_MACHINE={target.qemu[2]}")
    if variant == "asan":
        cmd.append("-DAMC_SANITIZE=ON")
    if variant == "large":
        cmd.append("-DAMC_TEST_LARGE=ON")
    if variant == "fuzz":
        cmd += ["-DAMC_FUZZ=ON", "-DCMAKE_C_COMPILER=clang"]
    sodium_missing = ""
    if target.linux and target.triple and variant == "":
        try:        # Debian's libsodium for the board, linked statically into amc-patch
            sodium = cross_library("libsodium", target.triple)
            cmd += [f"-DAMC_SODIUM_LIB={sodium.static_library}", f"-DAMC_SODIUM_INCLUDE={sodium.include_dir}"]
        except ToolMissingError as missing:
            sodium_missing = str(missing)
            cmd += ["-DAMC_SODIUM_LIB=AMC_SODIUM_LIB-NOTFOUND", "-DAMC_SODIUM_INCLUDE=AMC_SODIUM_INCLUDE-NOTFOUND"]
    configured = out / "amc-configure.txt"     # configure again when the command changes
    if not (out / "CMakeCache.txt").exists() or not configured.exists() or configured.read_text() != "\n".join(cmd):
        result = _run(cmd)
        if result.returncode:
            raise AmcError(f"cmake configure for {target.name} failed: {_last_line(result)}")
        configured.write_text("\n".join(cmd))
    result = _run(["cmake", "--build", str(out), "-j2"])
    if result.returncode:
        raise AmcError(f"runtime build for {target.name} failed: {_first_error(result)}")
    report(f"build runtime for {target.name}", 2, 2)
    suffix = ".elf" if not target.linux else ""
    cli = out / "amc-patch"
    build = RuntimeBuild(target.name, out, out / "libamc_patch.a", out / f"amc_patch_tests{suffix}",
                         cli if cli.exists() else None)
    # amc-patch is built exactly when libsodium is linked; the C tests then check Ed25519 with it too,
    # else they accept the (digest, signature) pairs the Python side signed (runtime/tests/test_patch.c)
    build.signature = "ed25519-libsodium" if build.cli else "trusted-fixture"
    if build.cli is None:
        build.cli_missing = sodium_missing or ("amc-patch is a Linux program: bare-metal firmware links "
                                               "libamc_patch.a with its own verifier" if not target.linux
                                               else "libsodium not found: apt-get install libsodium-dev")
    if variant == "":
        build.sizes = runtime_sizes(target, out)
    return build


def _last_line(result: subprocess.CompletedProcess) -> str:
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {result.returncode}"


def _first_error(result: subprocess.CompletedProcess) -> str:
    for line in (result.stdout + result.stderr).splitlines():
        if "error" in line:
            return line.strip()
    return _last_line(result)


# ---- sizes ------------------------------------------------------------------------------------

APPLY_PATH_SOURCES = ("amc_patch.c", "amc_sha256.c")


def runtime_sizes(target: Target, out: Path) -> dict:
    """Flash and RAM of the apply path (amc_patch.c + amc_sha256.c, without the signature
    verifier): text/data/bss, the worst-case stack from -fcallgraph-info, sizeof(amc_patch_t)."""
    size_tool = f"{target.triple}-size" if target.triple else "size"
    _need(size_tool, "binutils")
    objects = sorted((out / "CMakeFiles" / "amc_patch.dir" / "src").glob("*.c.o"))
    objects = [o for o in objects if o.name.removesuffix(".o") in APPLY_PATH_SOURCES]
    probe = out / "amc_size_probe.elf"
    measured = [probe] if probe.exists() else objects
    text = data = bss = 0
    result = _run([size_tool, *map(str, measured)])
    for line in result.stdout.splitlines()[1:]:
        fields = line.split()
        text, data, bss = text + int(fields[0]), data + int(fields[1]), bss + int(fields[2])
    libc: list[str] = []
    if probe.exists():     # the probe's own wrapper is not runtime code; list any libc it pulled
        nm = f"{target.triple}-nm" if target.triple else "nm"
        for line in _run([nm, "-S", str(probe)]).stdout.splitlines():
            fields = line.split()
            if len(fields) == 4 and fields[3] == "amc_size_probe":
                text -= int(fields[1], 16)
            elif len(fields) == 4 and fields[3] in ("memcpy", "memset", "memmove", "memcmp"):
                libc.append(fields[3])
    stack, path = worst_case_stack(sorted((out / "CMakeFiles" / "amc_patch.dir" / "src").glob("*.ci")))
    sizes = {
        "measured": "apply path linked alone (--gc-sections), SHA-256 included" if probe.exists()
        else "apply-path objects, SHA-256 included",
        "libc_functions": libc,
        "text_bytes": text, "data_bytes": data, "bss_bytes": bss,
        "max_stack_bytes": stack, "max_stack_path": path,
        "state_bytes": _state_size(target, out),
    }
    return sizes


def worst_case_stack(ci_files: list[Path]) -> tuple[int, list[str]]:
    """Deepest stack over the call graphs GCC wrote with -fcallgraph-info=su (callbacks into the
    port are indirect calls and not followed: they are the port's stack)."""
    own: dict[str, int] = {}
    calls: dict[str, set[str]] = {}
    node = re.compile(r'node: \{ title: "([^"]+)" label: "([^"]*)"')
    edge = re.compile(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"')
    for ci in ci_files:
        for line in ci.read_text().splitlines():
            if m := node.search(line):
                label = m.group(2).replace("\\n", "\n")
                found = re.search(r"\n(\d+) bytes", label)
                own[m.group(1)] = int(found.group(1)) if found else 0
            elif m := edge.search(line):
                calls.setdefault(m.group(1), set()).add(m.group(2))
    memo: dict[str, tuple[int, list[str]]] = {}

    def deepest(fn: str, seen: frozenset) -> tuple[int, list[str]]:
        if fn in memo:
            return memo[fn]
        best = (0, [])
        for callee in calls.get(fn, ()):
            if callee in seen:
                continue
            best = max(best, deepest(callee, seen | {callee}))
        memo[fn] = (own.get(fn, 0) + best[0], [fn] + best[1])
        return memo[fn]

    roots = [fn for fn in own if fn.endswith(("amc_patch_begin", "amc_patch_process",
                                              "amc_patch_finish"))]
    results = [deepest(fn, frozenset({fn})) for fn in roots]
    if not results:
        return 0, []
    stack, path = max(results)
    return stack, [p.split(":")[-1] for p in path]


def _state_size(target: Target, out: Path) -> int | None:
    """sizeof(amc_patch_t) on the target, read from a compiled object's symbol size."""
    compiler = f"{target.triple}-gcc" if target.triple else "cc"
    nm = f"{target.triple}-nm" if target.triple else "nm"
    if not shutil.which(compiler) or not shutil.which(nm):
        return None
    src = out / "state_size.c"
    src.write_text('#include "amc_patch.h"\namc_patch_t amc_state_probe;\n')
    obj = out / "state_size.o"
    result = _run([compiler, *target.cflags, "-fno-common", "-I", str(RUNTIME_DIR / "include"),
                   "-c", str(src), "-o", str(obj)])
    if result.returncode:
        return None
    for line in _run([nm, "-S", str(obj)]).stdout.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[3] == "amc_state_probe":
            return int(fields[1], 16)
    return None


# ---- fixtures ---------------------------------------------------------------------------------

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
    trusted: bytes | None = None     # digest + signature the trusted key made (default: the blob's)

    def encode(self) -> bytes:
        out = bytearray(bytes([int(self.expect_ok), len(self.base), self.flags, 0]))
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


def random_case(rng: np.random.Generator, kinds: tuple[str, ...], key: bytes,
                max_size: int = 6000, nfiles: int | None = None) -> FixtureCase:
    nfiles = nfiles or int(rng.integers(1, 4))
    sizes = [int(rng.integers(200, max_size)) for _ in range(nfiles)]
    base = {GRAPH_NAMES[i]: rng.bytes(sizes[i]) for i in range(nfiles)}
    records = []
    while not records:
        records = random_records(rng, sizes, kinds)
    version = int(rng.integers(1, 1000))
    blob, new = pb.make_blob(base, records, version, key)
    page = int(rng.choice([64, 128, 256, 512, 1024]))
    flags = F_SIG_TRUSTED | (F_BYTE_WRITABLE if rng.random() < 0.25 else 0)
    return FixtureCase(list(base.values()), list(new.values()), blob, page_size=page,
                       backup_pages=int(rng.integers(1, 6)), flags=flags,
                       min_version=version - 1 if rng.random() < 0.5 else 0)


def _resign(unsigned: bytes, key: bytes) -> bytes:
    """Digest and sign a hand-made header+body (for malformed-but-signed blobs)."""
    digest = hashlib.sha256(unsigned).digest()
    return unsigned + digest + pb.sign_digest(key, digest)


def reject_cases(rng: np.random.Generator, key: bytes) -> list[FixtureCase]:
    """Blobs a device must refuse, each with the error it must give, storage unchanged."""
    E = {"FORMAT": 2, "BOUNDS": 3, "TRUNCATED": 4, "DIGEST": 5, "SIGNATURE": 6, "BASE": 7,
         "VERSION": 8, "NOMEM": 9, "IO": 10}
    good = random_case(rng, ("sparse", "hash", "raw"), key, nfiles=2)
    parsed = pb.read_blob(good.blob)
    body = bytearray(good.blob[:-pb.TRAILER_SIZE])
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
        return _resign(bytes(b), key)

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
    case(_resign(b"AMCX" + bytes(body[4:]), key), "FORMAT")         # magic
    case(mutated(4, "<H", 2), "FORMAT")                              # format version
    case(mutated(6, "<H", 1), "FORMAT")                              # unknown flag
    case(mutated(16, "<I", 0xFFFFFF00), "BOUNDS")                    # blob length
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
    blob, _ = pb.make_blob(hashed, [pb.HashRecord(0, 0, 2048, 1, 5, tuple(range(100)))], 3, key)
    cases.append(FixtureCase(list(hashed.values()), list(hashed.values()), blob, expect_ok=False,
                             expect_error=-E["NOMEM"], bucket_buf_size=64))
    # sparse count larger than the region, and records out of order
    sparse = {GRAPH_NAMES[0]: rng.bytes(1024)}
    blob, _ = pb.make_blob(sparse, [pb.SparseRecord(0, 0, 64, 1, (1, 2), (5, 6))], 3, key)
    b = bytearray(blob[:-pb.TRAILER_SIZE])
    rh = pb.HEADER_SIZE + 1 + len(GRAPH_NAMES[0]) + 68
    struct.pack_into("<I", b, rh + 16, 65)
    cases.append(FixtureCase(list(sparse.values()), list(sparse.values()), _resign(bytes(b), key),
                             expect_ok=False, expect_error=-E["BOUNDS"]))
    two = [pb.RawRecord(0, 100, b"ab"), pb.RawRecord(0, 10, b"cd")]
    unsorted = bytearray(pb.write_blob([pb.PatchFile(GRAPH_NAMES[0], 1024, b"\0" * 32, b"\0" * 32)],
                                       two[:1], 3, key)[:-pb.TRAILER_SIZE])
    struct.pack_into("<I", unsorted, 24, 2)
    struct.pack_into("<I", unsorted, 16, len(unsorted) + 18 + pb.TRAILER_SIZE)
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


def write_fixture_packs(out_dir: Path, seed: int = 2026, crosscheck_cases: int = 300) -> dict[str, Path]:
    """The packs the C tests read: crosscheck, reject, powercut, badblob."""
    rng = np.random.default_rng(seed)
    key = pb.example_signing_key()
    public = pb.public_key(key)
    kinds = [("sparse",), ("hash",), ("raw",), ("sparse", "hash", "raw")]
    cross = [random_case(rng, kinds[i % 4], key) for i in range(crosscheck_cases)]
    for case in cross:       # the Python reference agrees before C is asked
        names = GRAPH_NAMES[:len(case.base)]
        assert pb.apply_blob(case.blob, dict(zip(names, case.base)), public) == dict(zip(names, case.new))
    power = []
    for i, (kinds_i, page, backup, writable) in enumerate(
            [(("sparse", "hash", "raw"), 256, 4, 0), (("hash",), 128, 1, 0),
             (("sparse", "raw"), 512, 2, F_BYTE_WRITABLE), (("hash", "sparse"), 64, 3, 0),
             (("sparse", "hash", "raw"), 1024, 2, 0), (("hash",), 256, 8, F_BYTE_WRITABLE)]):
        case = random_case(rng, kinds_i, key, max_size=3000, nfiles=1 + i % 3)
        case.page_size, case.backup_pages = page, backup
        case.flags = F_SIG_TRUSTED | F_POWERCUT | writable
        power.append(case)
    small = {GRAPH_NAMES[0]: rng.bytes(700), GRAPH_NAMES[1]: rng.bytes(300)}
    blob, new = pb.make_blob(small, [pb.SparseRecord(0, 64, 256, 1, (3, 40, 41, 200), (1, 2, 3, -4)),
                                     pb.HashRecord(0, 320, 128, 2, 77, (3, -2, 9), True),
                                     pb.RawRecord(1, 16, b"scale")], 5, key)
    bad = [FixtureCase(list(small.values()), list(new.values()), blob, page_size=128,
                       flags=F_SIG_TRUSTED | F_BADBLOB)]
    return {
        "crosscheck": write_pack(out_dir / "crosscheck.pack", cross, public),
        "reject": write_pack(out_dir / "reject.pack", reject_cases(rng, key), public),
        "powercut": write_pack(out_dir / "powercut.pack", power, public),
        "badblob": write_pack(out_dir / "badblob.pack", bad, public),
    }


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


# ---- running the C tests ----------------------------------------------------------------------

@dataclass
class RuntimeTestResult:
    target: str
    ok: bool
    suites: dict
    seconds: float
    output: str

    def to_json(self) -> dict:
        return {"target": self.target, "ok": self.ok, "suites": self.suites,
                "seconds": round(self.seconds, 2)}


def runner_command(target: Target, program: Path, args: list[str]) -> list[str]:
    """How a built test program runs here: natively, under qemu-user, or bare-metal."""
    if not target.qemu:
        return [str(program), *args]
    _need(target.qemu[0], "qemu-user" if target.linux else "qemu-system-arm")
    if target.linux:
        return [*target.qemu, str(program), *args]
    return [*target.qemu, "-nographic", "-monitor", "none", "-serial", "none",
            "-semihosting-config", "enable=on,target=native", "-kernel", str(program),
            "-append", " ".join(args)]


def parse_suites(output: str) -> dict:
    suites = {}
    for line in output.splitlines():
        words = line.split()
        if len(words) >= 2 and all("=" in w for w in words[1:]):
            suites[words[0]] = {k: _number(v) for k, v in (w.split("=", 1) for w in words[1:])}
    return suites


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def test_runtime(target_name: str, report: Report = quiet, variant: str = "",
                 crosscheck_cases: int = 300) -> RuntimeTestResult:
    """Build for the preset, write the fixture packs, run the C tests there, parse the counts."""
    import time
    target = get_target(target_name)
    build = build_runtime(target_name, variant=variant, report=report)
    fixtures = BUILD_ROOT / "fixtures"
    report("write fixtures", 0, 1)
    packs = cached_fixture_packs(fixtures, crosscheck_cases)
    report("write fixtures", 1, 1)
    args = [os.path.relpath(p, BUILD_ROOT) for p in packs.values()]
    report(f"run C tests on {target.name}", 0, 1)
    start = time.monotonic()
    result = _run(runner_command(target, build.tests, args), cwd=BUILD_ROOT, timeout=900)
    seconds = time.monotonic() - start
    report(f"run C tests on {target.name}", 1, 1)
    output = result.stdout + result.stderr
    ok = result.returncode == 0 and "RESULT ok" in output
    return RuntimeTestResult(target.name, ok, parse_suites(output), seconds, output)


def crosscheck_dumped(target_name: str, pack: Path, dump_dir: Path,
                      report: Report = quiet) -> tuple[list[dict], float]:
    """The crosscheck cases of one pack in the 'large' bare-metal build of the test program, each
    case's files as the apply left them written back to `dump_dir` (case<K>-file<I>.bin): the
    program's `crosscheck_case` line of each case (index, rc, files_equal, seconds) and the
    run's wall seconds."""
    import time
    target = get_target(target_name)
    build = build_runtime(target_name, variant="large", report=report)
    dump_dir.mkdir(parents=True, exist_ok=True)
    # semihosting hands the program a short command line: paths relative to the pack's folder
    args = ["--dump", os.path.relpath(dump_dir, pack.parent), pack.name]
    report(f"crosscheck on {target.name}", 0, 1)
    start = time.monotonic()
    result = _run(runner_command(target, build.tests, args), cwd=pack.parent, timeout=1800)
    seconds = time.monotonic() - start
    report(f"crosscheck on {target.name}", 1, 1)
    output = result.stdout + result.stderr
    cases = [{k: _number(v) for k, v in (w.split("=", 1) for w in line.split()[1:])}
             for line in output.splitlines() if line.startswith("crosscheck_case ")]
    if "RESULT" not in output or "FAIL bad case" in output or "FAIL cannot write" in output:
        failed = [line for line in output.splitlines() if line.startswith("FAIL")]
        raise AmcError(f"the {target.name} test program did not run {pack.name}: "
                       f"{failed[0] if failed else _last_line(result)}")
    return cases, seconds


def bench_runtime(report: Report = quiet) -> list[dict]:
    """Host throughput: verify + apply of 1 MiB graph files on the simulated flash, one core."""
    build = build_runtime("host", report=report)
    pack = write_bench_pack(BUILD_ROOT / "fixtures")
    result = _run([str(build.tests), "--bench", str(pack)], timeout=600)
    if result.returncode:
        raise AmcError(f"runtime benchmark failed: {_last_line(result)}")
    return [{k: _number(v) for k, v in (w.split("=", 1) for w in line.split()[1:])}
            for line in result.stdout.splitlines() if line.startswith("bench ")]


def fuzz_runtime(seconds: int = 25, report: Report = quiet) -> dict:
    """Run the libFuzzer target for a bounded time on runtime/fuzz/corpus (merged into a copy
    under build/, so the repository corpus stays small)."""
    build = build_runtime("host", variant="fuzz", report=report)
    fuzzer = build.build_dir / "amc_patch_fuzz"
    work = build.build_dir / "corpus"
    work.mkdir(exist_ok=True)
    for seed in (RUNTIME_DIR / "fuzz" / "corpus").iterdir():
        shutil.copy(seed, work / seed.name)
    report("fuzz", 0, seconds)
    result = _run([str(fuzzer), f"-max_total_time={seconds}", "-max_len=4096", "-timeout=10",
                   "-print_final_stats=1", f"-artifact_prefix={build.build_dir}/",
                   str(work)], timeout=seconds + 120)
    report("fuzz", seconds, seconds)
    output = result.stdout + result.stderr
    runs = re.search(r"stat::number_of_executed_units:\s+(\d+)", output)
    crashed = result.returncode != 0 or "ERROR: AddressSanitizer" in output or \
        "runtime error" in output or "deadly signal" in output
    return {"seconds": seconds, "executions": int(runs.group(1)) if runs else 0,
            "crashes": 1 if crashed else 0, "corpus_files": len(list(work.iterdir())),
            "output_tail": output[-2000:] if crashed else ""}


def write_fuzz_seeds(corpus: Path, key: bytes | None = None) -> list[Path]:
    """Seed inputs for the fuzz corpus: small valid blobs of each record kind, prefixed by the
    harness's mode byte, against the harness's base files (their content does not matter there)."""
    key = key or pb.example_signing_key()
    rng = np.random.default_rng(99)
    corpus.mkdir(parents=True, exist_ok=True)
    out = []
    for i, kinds in enumerate([("sparse",), ("hash",), ("raw",), ("sparse", "hash", "raw")]):
        sizes = [4096, 4096]
        base = {GRAPH_NAMES[k]: bytes(4096) for k in range(2)}
        records = []
        while not records:
            records = random_records(rng, sizes, kinds)[:4]
        blob, _ = pb.make_blob(base, records, 2, key)
        path = corpus / f"seed-{i}-{'-'.join(kinds)}"
        path.write_bytes(bytes([i * 5]) + blob)
        out.append(path)
    return out
