"""The libFuzzer target of the runtime (device/runtime/fuzz), run for a bounded time, and its seeds."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np

from amc.common.progress import Report, quiet
from amc.patch import blob as pb
from amc.runtime.build import RUNTIME_DIR, build_runtime
from amc.runtime.fixtures import GRAPH_NAMES, random_records
from amc.runtime.tools import run_tool


def fuzz_runtime(seconds: int = 25, report: Report = quiet) -> dict:
    """Run the libFuzzer target for a bounded time on device/runtime/fuzz/corpus (merged into a copy
    under build/, so the repository corpus stays small)."""
    build = build_runtime("host", variant="fuzz", report=report)
    fuzzer = build.build_dir / "amc_patch_fuzz"
    work = build.build_dir / "corpus"
    work.mkdir(exist_ok=True)
    for seed in (RUNTIME_DIR / "fuzz" / "corpus").iterdir():
        shutil.copy(seed, work / seed.name)
    report("fuzz", 0, seconds)
    result = run_tool([str(fuzzer), f"-max_total_time={seconds}", "-max_len=4096", "-timeout=10",
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
