"""`amc bench diff`: the neural-diff experiment of docs/benchmarks.md, recomputed from the shipped
updates (model/updates/).

Five successive updates from v1, each applied on top of the last, per method chain:
full retraining (the reference), sparse and hash diffs at each budget, and the plain baseline of
keeping the full retrain's largest int8 changes within the same budget. For every step: the blob
and the new bundle (`amc diff`, proven with the C runtime), CER on the old test subset and on the
update's new-words test set, and the sizes of generic binary diffs (bsdiff4, detools in-place,
zstd --patch-from, xdelta3) of the same base and new graph files, both for the full retrain's
artifacts and for the very bytes the amc blob produces. With `cortex_m7`, every sparse and hash
chain is also made for that target's v1 bundle and applied bare-metal under qemu-system-arm
(`bench_diff_on_mcu`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from amc.common.errors import AmcError, InputError, ToolMissingError
from amc.common.progress import Report, quiet
from amc.patch.keys import development_key

SCENARIO = "scenario.json"


# ---- generic binary diffs ----------------------------------------------------------------------

def generic_diff_sizes(old: dict[str, bytes], new: dict[str, bytes]) -> dict[str, int]:
    """Bytes of each generic diff tool's patch from `old` to `new`, summed over the files that
    differ (a file that is unchanged needs no patch)."""
    sizes = {"bsdiff4": 0, "detools_inplace": 0, "zstd_patch_from": 0, "xdelta3": 0}
    for name in new:
        if old[name] == new[name]:
            continue
        for tool, size in _one_file(old[name], new[name]).items():
            sizes[tool] += size
    return sizes


def _one_file(old: bytes, new: bytes) -> dict[str, int]:
    try:
        import bsdiff4
        import detools
    except ImportError as error:
        raise ToolMissingError(f"{error.name} is not installed: pip install bsdiff4 detools") from None
    out = {"bsdiff4": len(bsdiff4.diff(old, new))}
    import io
    patch = io.BytesIO()
    size = max(len(old), len(new))
    segment = 1 << 16
    memory = (size + segment - 1) // segment * segment + segment
    detools.create_patch(io.BytesIO(old), io.BytesIO(new), patch, compression="lzma",
                         patch_type="in-place", memory_size=memory, segment_size=segment)
    out["detools_inplace"] = len(patch.getvalue())
    with tempfile.TemporaryDirectory(prefix="amc-generic-") as tmp:
        a, b = Path(tmp) / "old", Path(tmp) / "new"
        a.write_bytes(old)
        b.write_bytes(new)
        for tool, cmd in (("zstd_patch_from", ["zstd", "-q", "-19", "--long=27", f"--patch-from={a}", str(b),
                                               "-o", f"{tmp}/z.patch"]),
                          ("xdelta3", ["xdelta3", "-q", "-9", "-e", "-s", str(a), str(b), f"{tmp}/x.patch"])):
            if shutil.which(cmd[0]) is None:
                raise ToolMissingError(f"'{cmd[0]}' not found: apt-get install {cmd[0]}")
            done = subprocess.run(cmd, capture_output=True, timeout=600)
            if done.returncode:
                raise InputError(f"{cmd[0]} failed: {done.stderr.decode(errors='replace').strip()[:200]}")
            out[tool] = Path(cmd[-1]).stat().st_size
    return out


# ---- error rates, through the fused LSTM path --------------------------------------------------

def branch_cer(model, data, route: str = "slow", batch_size: int = 32) -> float:
    """CER (%) of one branch over whole utterances (the fused-kernel path, the arithmetic of the
    step graphs)."""
    from amc.model.decoding import error_rates, greedy_decode
    from amc.model.feature_set import batches

    references, hypotheses = [], []
    with torch.no_grad():
        for batch in batches(data, batch_size, model.config):
            logits = model.sequence_logits(route, batch.x)
            for row, length in enumerate(batch.lengths.tolist()):
                references.append(batch.texts[row])
                hypotheses.append(greedy_decode(logits[row, :length], model.config.vocabulary))
    return round(error_rates(references, hypotheses)[0], 2)


# ---- the scenario ------------------------------------------------------------------------------

def read_scenario(updates: Path) -> dict:
    path = Path(updates) / SCENARIO
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: missing; the update scenario is defined there") from None


def _base_bundle(base: Path | None, work: Path, report: Report) -> Path:
    if base is not None:
        return Path(base)
    out = work / "v1-rpi4"
    if not (out / "manifest.json").exists():
        from amc.compiler.pipeline import compile_bundle
        compile_bundle(None, target="rpi4", backend="executorch", output=out, verify=False, report=report)
    return out


def _blob_step(previous: Path, diff: Path, step_dir: Path, chain: str, budget_bytes: int):
    """One update of a chain: `amc diff` of `previous` and the update's diff, into
    step_dir/CHAIN.amcp and its new bundle, within the chain's budget."""
    from amc.compiler.bundle_diff import make_diff

    return make_diff(previous, diff, step_dir / f"{chain}.amcp", budget=budget_bytes,
                     signing_key=development_key().seed)


def bench_diff(updates: Path | str = Path("model/updates"), base: Path | str | None = None,
               work: Path | str = Path("build/bench-diff"), retrain: bool = False,
               report: Report = quiet, log: Callable[[dict], None] | None = None,
               cortex_m7: Path | str | None = None, rpi4_board: bool = False, split: str = "test",
               only: tuple[str, ...] = ()) -> dict:
    """The table. `split="dev"` scores on the development sets instead (the old corpus's dev split
    and each update's dev/), for tuning a recipe without the test sets; `only` names the chains to
    run (`sparse-10%`, `hash-2%`, `largest-10%`, ...), the full retrain always runs."""
    from amc.compiler.bundle_diff import grids_from_bundle, make_diff, read_base
    from amc.model.checkpoint import load_checkpoint, save_checkpoint
    from amc.model.corpus.updates import update_training_set
    from amc.model.feature_set import load_features
    from amc.model.neural_diff import (
        DiffSettings,
        deployed_model,
        largest_changes,
        load_diff,
        quantize_on,
        single_thread,
        train_diff,
        train_full,
    )

    started = time.time()
    updates, work = Path(updates), Path(work)
    scenario = read_scenario(updates)
    every = [f"{method}-{budget}" for budget in scenario["budgets"] for method in ("sparse", "hash", "largest")]
    unknown = [c for c in only if c not in every]
    if unknown:
        raise InputError(f"unknown chain '{unknown[0]}' (use {', '.join(every)})")
    if split not in ("test", "dev"):
        raise InputError(f"unknown split '{split}' (use test or dev)")
    running = [c for c in every if not only or c in only]
    log = log or (lambda entry: None)
    work.mkdir(parents=True, exist_ok=True)
    base_path = _base_bundle(Path(base) if base else None, work, report)
    base_bundle = read_base(base_path)
    reference = load_checkpoint(scenario.get("reference") or base_bundle.manifest["model"].get("checkpoint"))
    config = reference.config
    old_test = load_features(Path(scenario["old_test"]).parent / split, config.features)
    old_test = old_test.subset(range(min(len(old_test), scenario["old_test_utterances"])))
    budgets = scenario["budgets"]                      # name -> fraction of the bundle
    data_dir = Path(scenario["data"])
    names = scenario["updates"]
    file_names = tuple(base_bundle.files)
    chains = {"full": base_path}
    for chain in running:
        chains[chain] = base_path
    full_model = reference
    rows = []

    def evaluate(model, new_test) -> dict:
        with single_thread():
            route = scenario["routes"][0]
            return {"cer_old": branch_cer(model, old_test, route), "cer_new": branch_cer(model, new_test, route),
                    "route": route}

    grids0 = grids_from_bundle(base_bundle)
    first_test = load_features(data_dir / names[0] / split, config.features)
    rows.append({"update": "v1", "method": "deployed", "blob": None, "blob_bytes": 0,
                 "bundle_bytes": base_bundle.bundle_bytes,
                 **evaluate(deployed_model(reference, grids0), first_test)})
    log(rows[-1])
    steps = len(names) * len(chains)
    for name in names:
        step_dir = work / name
        step_dir.mkdir(exist_ok=True)
        new_test = load_features(data_dir / name / split, config.features)
        train_data = update_training_set(data_dir / name, config.features, scenario["old_train"],
                                         scenario["old_train_utterances"], scenario["seed"])
        # the reference: full retraining, requantized on the frozen scales (no budget)
        previous = chains["full"]
        full_ckpt = step_dir / "full-checkpoint"
        if retrain or not (full_ckpt / "model.safetensors").exists():
            trained = train_full(full_model, grids_from_bundle(read_base(previous)), train_data,
                                 epochs=scenario["full_epochs"], batch_size=scenario["batch_size"],
                                 learning_rate=scenario["learning_rate"]["full"], seed=scenario["seed"],
                                 routes=tuple(scenario["routes"]))
            save_checkpoint(trained, full_ckpt)
        full_model = load_checkpoint(full_ckpt)
        result = make_diff(previous, full_ckpt, step_dir / "full.amcp", budget=None, method="sparse",
                           signing_key=development_key().seed)
        chains["full"] = result.bundle
        full_grids = grids_from_bundle(read_base(result.bundle))
        row = {"update": name, "method": "full", "blob": str(result.blob), "blob_bytes": result.blob_bytes,
               "bundle_bytes": result.bundle_bytes, "bundle": str(result.bundle),
               "generic": generic_diff_sizes(read_base(previous).files, read_base(result.bundle).files),
               **evaluate(deployed_model(full_model, full_grids), new_test)}
        rows.append(row)
        log(row)
        report("bench diff", len(rows) - 1, steps)
        for budget, fraction in budgets.items():
            budget_bytes = int(base_bundle.bundle_bytes * fraction)
            for method in ("sparse", "hash", "largest"):
                chain = f"{method}-{budget}"
                if chain not in chains:
                    continue
                previous = chains[chain]
                grids = grids_from_bundle(read_base(previous))
                diff_path = updates / name / f"{chain}.amcd"
                if method == "largest":
                    diff = largest_changes(grids, quantize_on(grids, full_model), budget_bytes, file_names)
                    diff_path = step_dir / f"{chain}.amcd"
                    diff.save(diff_path)
                elif retrain or not diff_path.exists():
                    settings = DiffSettings(method=method, budget_bytes=budget_bytes, epochs=scenario["epochs"],
                                            finetune_epochs=scenario.get("finetune_epochs", 1),
                                            batch_size=scenario["batch_size"],
                                            learning_rate=scenario["learning_rate"][method], seed=scenario["seed"],
                                            routes=tuple(scenario["routes"]), file_names=file_names)
                    diff = train_diff(reference, grids, train_data, settings)
                    diff_path.parent.mkdir(parents=True, exist_ok=True)
                    diff.save(diff_path)
                diff = load_diff(diff_path)
                result = _blob_step(previous, diff_path, step_dir, chain, budget_bytes)
                chains[chain] = result.bundle
                new_grids = grids_from_bundle(read_base(result.bundle))
                row = {"update": name, "method": method, "budget": budget, "budget_bytes": budget_bytes,
                       "blob": str(result.blob), "blob_bytes": result.blob_bytes,
                       "bundle_bytes": result.bundle_bytes, "bundle": str(result.bundle),
                       "changed_elements": result.changed_elements, "records": result.records,
                       "diff": str(diff_path),
                       **evaluate(deployed_model(reference, new_grids), new_test)}
                if method == "sparse":
                    row["generic_same_target"] = generic_diff_sizes(read_base(previous).files,
                                                                    read_base(result.bundle).files)
                rows.append(row)
                log(row)
                report("bench diff", len(rows) - 1, steps)
    out = {"scenario": scenario, "split": split, "base": str(base_path), "bundle_bytes": base_bundle.bundle_bytes,
           "rows": rows, "seconds": round(time.time() - started, 1), "summary": summarize(rows)}
    if rpi4_board:
        out["rpi4_board"] = board_rows(rows, base_path, work / "board", report)
    if cortex_m7 is not None:
        out["cortex_m7"] = bench_diff_on_mcu(updates, cortex_m7, work / "cortex-m7", report=report)
    return out


def board_rows(rows: list[dict], base: Path, work: Path, report: Report = quiet) -> list[dict]:
    """Every sparse and hash chain of the table's rows, applied blob by blob on the emulated Pi 4
    (`check_on_board`), one row per blob with its chain."""
    out = []
    for chain in sorted({f"{r['method']}-{r['budget']}" for r in rows if r["method"] in ("sparse", "hash")}):
        steps = [r for r in rows if f"{r['method']}-{r.get('budget')}" == chain]
        checked = check_on_board([(Path(r["blob"]), Path(r["bundle"])) for r in steps], base, work=work,
                                 report=report)
        out += [{"chain": chain, "update": r["update"], "blob_bytes": r["blob_bytes"], **c}
                for r, c in zip(steps, checked)]
    return out


def summarize(rows: list[dict]) -> dict:
    """After the last update: each method's CER gap to full retraining, and the size ratios."""
    last = rows[-1]["update"]
    final = {(r["method"] + (f"-{r['budget']}" if r.get("budget") else "")): r for r in rows if r["update"] == last}
    full = final.get("full")
    out = {}
    if full:
        for name, row in final.items():
            out[name] = {"cer_old_gap": round(row["cer_old"] - full["cer_old"], 2),
                         "cer_new_gap": round(row["cer_new"] - full["cer_new"], 2)}
        best_generic = [min(r["generic"].values()) for r in rows if r["method"] == "full"]
        amc10 = [r["blob_bytes"] for r in rows if r["method"] == "sparse" and r["budget"] == "10%"]
        if best_generic and amc10:
            out["generic_over_sparse_10"] = round(min(best_generic) / max(amc10), 2)
    return out


def render_markdown(result: dict) -> str:
    lines = ["| update | method | budget | blob bytes | % of bundle | CER old | CER new |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        share = f"{100 * r['blob_bytes'] / r['bundle_bytes']:.2f}" if r["blob_bytes"] else "-"
        lines.append(f"| {r['update']} | {r['method']} | {r.get('budget', '-')} | {r['blob_bytes']} | {share} | "
                     f"{r['cer_old']:.2f} | {r['cer_new']:.2f} |")
    lines += ["", "| update | artifacts | amc blob | bsdiff4 | detools in-place | zstd --patch-from | xdelta3 |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        generic = r.get("generic") or r.get("generic_same_target")
        if not generic:
            continue
        what = "full retrain" if r["method"] == "full" else f"same target as sparse {r['budget']}"
        blob = "-" if r["method"] == "full" else str(r["blob_bytes"])
        lines.append(f"| {r['update']} | {what} | {blob} | {generic['bsdiff4']} | {generic['detools_inplace']} | "
                     f"{generic['zstd_patch_from']} | {generic['xdelta3']} |")
    if "rpi4_board" in result:
        lines += ["", "| chain (emulated Pi 4) | update | blob bytes | files equal | outputs compared | "
                      "max int8 step diff |", "| --- | --- | --- | --- | --- | --- |"]
        for r in result["rpi4_board"]:
            lines.append(f"| {r['chain']} | {r['update']} | {r['blob_bytes']} | {r['files_equal']} | "
                         f"{r['outputs_compared']} | {r['max_int8_step_diff']} |")
    if "cortex_m7" in result:
        lines += ["", "| chain | update | blob bytes | applied | files equal | outputs compared | max int8 step diff |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in result["cortex_m7"]["rows"]:
            lines.append(f"| {r['chain']} | {r['update']} | {r['blob_bytes']} | {r['applied']} | "
                         f"{r['files_equal'] and r['dumped_files_equal']} | {r['outputs_compared']} | "
                         f"{r['max_int8_step_diff']} |")
    return "\n".join(lines)


# ---- on the board: each blob applied in place by amc-patch under QEMU ---------------------------

def check_on_board(chain: list[tuple[Path, Path]], base: Path, target_name: str = "rpi4",
                   utterances: int = 2, per_graph: int = 20, work: Path | str = Path("build/bench-diff/board"),
                   report: Report = quiet) -> list[dict]:
    """Apply the blobs of a chain [(blob, new bundle), ...] one after the other, in place, to a
    copy of `base` with the board's own `amc-patch` under qemu-user (resume first, as at boot);
    after each, the files must equal the new bundle's and the patched graphs, run by the board's
    runner, must give the outputs the new bundle gives on the host."""
    from amc.compiler.bundle import load_bundle
    from amc.model.feature_set import load_features
    from amc.ontarget.linux_board import Board, patch_tool
    from amc.ontarget.recording import compare_outputs, host_outputs, record_graph_inputs
    from amc.patch import blob as pb
    from amc.targets.presets import get_target

    target = get_target(target_name)
    board = Board(target, report)
    tool = patch_tool(target, report)
    work = Path(work)
    device = work / "device-bundle"
    if device.exists():
        shutil.rmtree(device)
    shutil.copytree(base, device, ignore=shutil.ignore_patterns(".amc-patch"))
    key = work / "update.pub"
    key.write_bytes(pb.public_key(pb.example_signing_key()))
    host = load_bundle(base)
    data = load_features("data/corpus/test", host.config.features)
    recording = record_graph_inputs(host, [f.numpy() for f in data.features[:utterances]], per_graph,
                                    host.config.nominal_mflops)
    out = []
    for index, (blob, new_bundle) in enumerate(chain):
        board.run(tool, ["resume", "--dir", device, "--key", key, blob], "amc-patch resume")
        applied = board.run(tool, ["apply", "--dir", device, "--key", key, blob], "amc-patch apply")
        names = [load_bundle(new_bundle).manifest["graphs"][g]["file"] for g in ("fast", "slow", "arbitrator")]
        files_equal = all((device / n).read_bytes() == (Path(new_bundle) / n).read_bytes() for n in names)
        expected = host_outputs(load_bundle(new_bundle), recording.inputs)
        produced = board.run_graphs(device, recording.inputs, work)
        comparison = compare_outputs(load_bundle(new_bundle).manifest, expected, produced)
        out.append({"blob": str(blob), "target": target.name, "files_equal": files_equal,
                    "outputs_compared": comparison["outputs_compared"],
                    "max_int8_step_diff": comparison["max_int8_step_diff"], "apply": applied.strip()})
        report(f"patch on {target.name}", index + 1, len(chain))
    return out


# ---- on the microcontroller: each blob applied bare-metal by the C runtime under qemu-system-arm --

def check_on_mcu(chain: list[tuple[Path, Path]], base: Path, target_name: str = "cortex-m7",
                 utterances: int = 2, per_graph: int = 20, work: Path | str = Path("build/bench-diff/cortex-m7/check"),
                 report: Report = quiet) -> list[dict]:
    """Apply the blobs of a chain [(blob, new bundle), ...] bare-metal with the C runtime's test
    program (its 'large' build, the buffers in the board's PSRAM) under qemu-system-arm: blob k in
    place to the files of bundle k-1 (`base` for the first), with a bucket buffer as large as the
    blob's largest hash record needs (at least the 4 KiB of the default build), the files then
    written back over semihosting. They must equal the new bundle's, in the program and on the
    host, and the patched graphs, run in TFLite Micro (the interpreter the MCU runs) in the
    manifest's arena, must give the outputs the new bundle gives there and differ from the
    previous step's (`utterances=0` skips the graphs)."""
    from amc.compiler.bundle import load_bundle
    from amc.compiler.manifest import read_manifest
    from amc.ontarget.recording import GRAPHS, check_bundle_target, compare_outputs, host_outputs, record_graph_inputs
    from amc.patch import blob as pb
    from amc.runtime.c_tests import crosscheck_dumped
    from amc.runtime.fixtures import F_SIG_TRUSTED, FixtureCase, write_pack
    from amc.targets.presets import get_target

    target = get_target(target_name)
    base, work = Path(base), Path(work)
    manifest = read_manifest(base)
    check_bundle_target(base, manifest, target)
    if utterances and manifest["backend"] != "tflite":
        raise InputError(f"{base}: TFLite Micro runs TFLite bundles, this one is '{manifest['backend']}'")
    device, dumps = work / "device-bundle", work / "dump"     # the device's files, as the runtime left them
    for old in (device, dumps):
        if old.exists():
            shutil.rmtree(old)
    shutil.copytree(base, device, ignore=shutil.ignore_patterns(".amc-patch", "model_data.*"))
    cases, targeted, buckets, previous = [], [], [], base
    for blob, new_bundle in chain:
        data = Path(blob).read_bytes()
        parsed = pb.read_blob(data)
        names = [f.name for f in parsed.files]
        buckets.append(max((len(r.buckets) * r.elem_size for r in parsed.records if isinstance(r, pb.HashRecord)),
                           default=0))
        cases.append(FixtureCase([(previous / n).read_bytes() for n in names],
                                 [(Path(new_bundle) / n).read_bytes() for n in names], data,
                                 page_size=4096, backup_pages=4, flags=F_SIG_TRUSTED,
                                 bucket_buf_size=max(buckets[-1], 4096)))
        targeted.append(names)
        previous = Path(new_bundle)
    pack = write_pack(work / "chain.pack", cases, pb.public_key(pb.example_signing_key()))
    applied, seconds = crosscheck_dumped(target.name, pack, dumps, report)
    if len(applied) != len(chain):
        raise AmcError(f"the {target.name} test program reported {len(applied)} of {len(chain)} blobs")
    recording = None
    if utterances:
        from amc.model.feature_set import load_features
        host = load_bundle(base)
        data = load_features("data/corpus/test", host.config.features)
        recording = record_graph_inputs(host, [f.numpy() for f in data.features[:utterances]], per_graph,
                                        host.config.nominal_mflops)
        before = host_outputs(load_bundle(base, runtime="tflite-micro"), recording.inputs)
    out = []
    for index, ((blob, new_bundle), names, case) in enumerate(zip(chain, targeted, applied)):
        new_bundle = Path(new_bundle)
        row = {"blob": str(blob), "target": target.name, "blob_bytes": Path(blob).stat().st_size,
               "bucket_bytes": buckets[index], "applied": case["rc"] == 0, "rc": case["rc"],
               "files_equal": bool(case["files_equal"]), "dumped_files_equal": False, "outputs_compared": 0,
               "max_int8_step_diff": None, "outputs_changed": None, "apply_seconds": case["seconds"],
               "qemu_seconds": round(seconds, 1)}
        if case["rc"] == 0:
            for i, name in enumerate(names):
                shutil.copyfile(dumps / f"case{case['index']}-file{i}.bin", device / name)
            shutil.copyfile(new_bundle / "manifest.json", device / "manifest.json")
            new_manifest = read_manifest(new_bundle)
            files = [new_manifest["graphs"][g]["file"] for g in GRAPHS]
            row["dumped_files_equal"] = all((device / n).read_bytes() == (new_bundle / n).read_bytes() for n in files)
            if recording is not None:
                expected = host_outputs(load_bundle(new_bundle, runtime="tflite-micro"), recording.inputs)
                produced = host_outputs(load_bundle(device, runtime="tflite-micro"), recording.inputs)
                comparison = compare_outputs(new_manifest, expected, produced)
                row["outputs_compared"] = comparison["outputs_compared"]
                row["max_int8_step_diff"] = comparison["max_int8_step_diff"]
                row["outputs_changed"] = compare_outputs(new_manifest, before, produced)["max_int8_step_diff"] > 0
                before = produced
        out.append(row)
        report(f"patch on {target.name}", index + 1, len(chain))
    return out


def shipped_chains(updates: Path | str, base: Path | str, work: Path | str,
                   report: Report = quiet) -> dict[str, list[tuple[Path, Path]]]:
    """The shipped sparse and hash diffs made into blobs for another v1 bundle (another target's),
    as `bench_diff` makes its chains: each update on top of the previous one's new bundle, within
    the budget's share of v1. Chain name ('sparse-10%') -> [(blob, new bundle), ...] in update
    order, under work/uN/."""
    from amc.compiler.bundle_diff import read_base

    updates, work = Path(updates), Path(work)
    scenario = read_scenario(updates)
    bundle_bytes = read_base(base).bundle_bytes
    chains: dict[str, list[tuple[Path, Path]]] = {}
    total = len(scenario["budgets"]) * 2 * len(scenario["updates"])
    for budget, fraction in scenario["budgets"].items():
        for method in ("sparse", "hash"):
            chain, previous = f"{method}-{budget}", Path(base)
            chains[chain] = []
            for name in scenario["updates"]:
                diff = updates / name / f"{chain}.amcd"
                if not diff.is_file():
                    raise InputError(f"{diff}: missing; `amc bench diff --retrain` trains the shipped diffs")
                (work / name).mkdir(parents=True, exist_ok=True)
                result = _blob_step(previous, diff, work / name, chain, int(bundle_bytes * fraction))
                chains[chain].append((result.blob, result.bundle))
                previous = result.bundle
                report("amc diff", sum(map(len, chains.values())), total)
    return chains


def bench_diff_on_mcu(updates: Path | str, base: Path | str, work: Path | str = Path("build/bench-diff/cortex-m7"),
                      target_name: str = "cortex-m7", utterances: int = 2, per_graph: int = 20,
                      report: Report = quiet) -> dict:
    """Every shipped sparse and hash chain made for `base` (a TFLite bundle compiled for the
    Cortex-M7) and applied bare-metal under qemu-system-arm (`check_on_mcu`)."""
    from amc.targets.presets import get_target

    started = time.time()
    work = Path(work)
    names = read_scenario(Path(updates))["updates"]
    rows = []
    for chain, steps in shipped_chains(updates, base, work, report).items():
        checked = check_on_mcu(steps, base, target_name, utterances, per_graph, work / "check", report)
        rows += [{"chain": chain, "update": name, **row} for name, row in zip(names, checked)]
    return {"target": target_name, "base": str(base), "emulator": " ".join(get_target(target_name).qemu),
            "rows": rows, "seconds": round(time.time() - started, 1)}
