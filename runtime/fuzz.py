"""The libFuzzer targets of the runtime (device/runtime/fuzz), run for a bounded time; their seeds.

Two modes (docs/patch-format.md, "Fuzzing"):
  parser    fuzz_patch.c: mutated blobs through a core built without its sha256 comparisons, so they
            reach the page walk.
  mismatch  fuzz_mismatch.c: the core as shipped; the verify pass reads a genuine blob (one of
            `genuine_cases`), the apply pass the fuzzed stream. Storage must only ever hold
            authenticated content, and the genuine blob must still finish afterwards.
"""

from __future__ import annotations

import re
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amc.common.errors import InputError
from amc.common.progress import Report, quiet
from amc.patch import blob as pb
from amc.runtime.build import RUNTIME_DIR, build_runtime
from amc.runtime.fixtures import GRAPH_NAMES, random_records
from amc.runtime.tools import run_tool

FUZZERS = {"parser": "amc_patch_fuzz", "mismatch": "amc_patch_fuzz_mismatch"}
CORPUS = RUNTIME_DIR / "fuzz" / "corpus"     # one folder of seeds per mode
MAX_LEN = 8192                               # input bytes; every seed fits


def fuzz_runtime(seconds: int = 25, mode: str = "parser", report: Report = quiet) -> dict:
    """Run one fuzz mode for a bounded time on its seeds in device/runtime/fuzz/corpus/<mode>
    (merged into a copy under build/, so the repository corpus stays small)."""
    if mode not in FUZZERS:
        raise InputError(f"fuzz mode '{mode}' is not one of {', '.join(FUZZERS)}")
    build = build_runtime("host", variant="fuzz", report=report)
    work = build.build_dir / f"corpus-{mode}"
    work.mkdir(exist_ok=True)
    for seed in (CORPUS / mode).iterdir():
        shutil.copy(seed, work / seed.name)
    cmd = [str(build.build_dir / FUZZERS[mode]), f"-max_total_time={seconds}", f"-max_len={MAX_LEN}",
           "-timeout=10", "-print_final_stats=1", f"-artifact_prefix={build.build_dir}/{mode}-",
           str(work)]
    if mode == "mismatch":      # this amc's cases and seeds, should the checked-in seeds be stale
        cases = genuine_cases()
        genuine = write_genuine_cases(build.build_dir / "genuine-cases.bin", cases)
        write_mismatch_seeds(work, cases)
        cmd = ["env", f"AMC_FUZZ_GENUINE={genuine}"] + cmd
    report(f"fuzz {mode}", 0, seconds)
    result = run_tool(cmd, timeout=seconds + 120)
    report(f"fuzz {mode}", seconds, seconds)
    output = result.stdout + result.stderr
    runs = re.search(r"stat::number_of_executed_units:\s+(\d+)", output)
    crashed = result.returncode != 0 or "ERROR: AddressSanitizer" in output or \
        "runtime error" in output or "deadly signal" in output
    oracle = [line for line in output.splitlines() if line.startswith("fuzz_mismatch:")]
    return {"mode": mode, "seconds": seconds, "executions": int(runs.group(1)) if runs else 0,
            "crashes": 1 if crashed else 0, "corpus_files": len(list(work.iterdir())),
            "output_tail": "\n".join(oracle + [output[-2000:]]) if crashed else ""}


# ---- the genuine cases of the mismatch mode -------------------------------------------------

@dataclass(frozen=True)
class GenuineCase:
    """A valid blob with the files it applies to and the files it makes."""
    base: list[bytes]
    result: list[bytes]
    blob: bytes


# (record kinds, file count, chunk size): every kind, chunk sizes 64..1024
GENUINE_SHAPES = [(("sparse",), 1, 64), (("hash",), 2, 128), (("raw",), 1, 256),
                  (("sparse", "hash", "raw"), 3, 512), (("sparse", "hash", "raw"), 2, 1024),
                  (("hash",), 3, 64), (("sparse",), 2, 1024), (("raw", "sparse"), 1, 128)]


def genuine_cases(key: bytes | None = None) -> list[GenuineCase]:
    """The same cases every time (fixed seed; Ed25519 signatures are deterministic), so the
    corpus seeds keep matching them."""
    key = key or pb.example_signing_key()
    rng = np.random.default_rng(2024)
    cases = []
    for kinds, nfiles, chunk_size in GENUINE_SHAPES:
        sizes = [int(rng.integers(300, 3000)) for _ in range(nfiles)]
        base = {GRAPH_NAMES[i]: rng.bytes(sizes[i]) for i in range(nfiles)}
        records = []
        while not records:
            records = random_records(rng, sizes, kinds)
        blob, new = pb.make_blob(base, records, 7, key, chunk_size)
        assert len(blob) + 2 <= MAX_LEN, "a genuine blob must fit the fuzzer's input"
        cases.append(GenuineCase(list(base.values()), list(new.values()), blob))
    return cases


def write_genuine_cases(path: Path, cases: list[GenuineCase] | None = None) -> Path:
    """The file fuzz_mismatch.c loads (AMC_FUZZ_GENUINE): "AMCG", u32 case count, then per case u32
    file count, u32 blob length, u32 size per file, the base files, the result files, the blob."""
    cases = cases if cases is not None else genuine_cases()
    out = bytearray(b"AMCG" + struct.pack("<I", len(cases)))
    for case in cases:
        out += struct.pack("<II", len(case.base), len(case.blob))
        out += b"".join(struct.pack("<I", len(data)) for data in case.base)
        out += b"".join(case.base) + b"".join(case.result) + case.blob
    path.write_bytes(bytes(out))
    return path


# ---- seeds ----------------------------------------------------------------------------------

def write_fuzz_seeds(corpus: Path = CORPUS, key: bytes | None = None) -> list[Path]:
    """The seeds of both modes, in corpus/parser and corpus/mismatch."""
    key = key or pb.example_signing_key()
    return write_parser_seeds(corpus / "parser", key) + \
        write_mismatch_seeds(corpus / "mismatch", genuine_cases(key))


def write_parser_seeds(folder: Path, key: bytes) -> list[Path]:
    """Small valid blobs of each record kind, prefixed by the harness's mode byte, against the
    harness's base files (their content does not matter there)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(99)
    out = []
    for i, (kinds, chunk_size) in enumerate([(("sparse",), 64), (("hash",), 256), (("raw",), 1024),
                                              (("sparse", "hash", "raw"), 128)]):
        base = {GRAPH_NAMES[k]: bytes(4096) for k in range(2)}
        records = []
        while not records:
            records = random_records(rng, [4096, 4096], kinds)[:4]
        blob, _ = pb.make_blob(base, records, 2, key, chunk_size)
        out.append(folder / f"seed-{i}-{'-'.join(kinds)}")
        out[-1].write_bytes(bytes([i * 5]) + blob)
    return out


def write_mismatch_seeds(folder: Path, cases: list[GenuineCase]) -> list[Path]:
    """Each genuine blob unchanged, after its case byte and an options byte (page size, storage
    kind, resume or rollback, call size: fuzz_mismatch.c) that differs from seed to seed."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, case in enumerate(cases):
        options = i % 5 | (i & 1) << 3 | (i & 2) << 3 | (i & 4) << 3 | (i % 4) << 6
        out.append(folder / f"case-{i}")
        out[-1].write_bytes(bytes([i, options]) + case.blob)
    return out
