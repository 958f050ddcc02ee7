"""Flash, RAM and worst-case stack of the runtime's apply path on a board, from a build's objects."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from amc.common.paths import device_sources
from amc.runtime.tools import run_tool
from amc.targets.presets import Target
from amc.targets.qemu import need_tool

APPLY_PATH_SOURCES = ("amc_patch.c", "amc_sha256.c")


def runtime_sizes(target: Target, out: Path) -> dict:
    """Flash and RAM of the apply path (amc_patch.c + amc_sha256.c, without the signature
    verifier): text/data/bss, the worst-case stack from -fcallgraph-info, sizeof(amc_patch_t)."""
    size_tool = f"{target.triple}-size" if target.triple else "size"
    need_tool(size_tool, "binutils")
    objects = sorted((out / "CMakeFiles" / "amc_patch.dir" / "src").glob("*.c.o"))
    objects = [o for o in objects if o.name.removesuffix(".o") in APPLY_PATH_SOURCES]
    probe = out / "amc_size_probe.elf"
    measured = [probe] if probe.exists() else objects
    text = data = bss = 0
    result = run_tool([size_tool, *map(str, measured)])
    for line in result.stdout.splitlines()[1:]:
        fields = line.split()
        text, data, bss = text + int(fields[0]), data + int(fields[1]), bss + int(fields[2])
    libc: list[str] = []
    if probe.exists():     # the probe's own wrapper is not runtime code; list any libc it pulled
        nm = f"{target.triple}-nm" if target.triple else "nm"
        for line in run_tool([nm, "-S", str(probe)]).stdout.splitlines():
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
                                              "amc_patch_finish", "amc_patch_commit"))]
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
    result = run_tool([compiler, *target.cflags, "-fno-common", "-I", str(device_sources("runtime") / "include"),
                   "-c", str(src), "-o", str(obj)])
    if result.returncode:
        return None
    for line in run_tool([nm, "-S", str(obj)]).stdout.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[3] == "amc_state_probe":
            return int(fields[1], 16)
    return None
