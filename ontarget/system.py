"""`amc test --target rpi4 --system`: the bundle on a booted Raspberry Pi 4-class system (Debian
arm64 under qemu-system-aarch64, systemd as init; targets/system.py), as a device runs it:

1. the system: the cached Debian image (built first when missing), a copy of it with the
   `amc image` overlay written in (bundle in /var/lib/amc/model, amc-runner, amc-patch, the boot
   unit enabled, a keyring trusting the update's key), booted; `booted` and the boot time;
2. graphs and streaming (steps 4-5 of amc.ontarget.harness) with the image's own amc-runner and
   bundle, each command a transient systemd unit (`systemd-run --wait --pipe`): graph outputs,
   front-end frames, transcripts and routes against the host's;
3. the patch at boot: a signed update blob put in /var/lib/amc/pending, a reboot, the boot unit
   (amc-patch.service) applies it; the model's files against the new bundle, then the patched
   graphs against the new bundle's outputs on the host;
4. power cuts across reboots (`power_cuts` > 0): QEMU killed at points spread over the boot
   unit's apply, the system booted again until the boot unit has finished; the model must end
   byte-identical to the new bundle, or, where a rollback is asked for instead (every third
   cut), to the old one. Reported: cut points tried, corrupted (goal 0), boots needed, and the
   journal state each cut left (`amc-patch status` printed by the boot unit before it resumes);
5. the OTA clients (amc.ontarget.ota): Mender's `mender install` + `mender commit` and
   SWUpdate's `swupdate -i` deliver a tampered blob (refused, model untouched) and then a further
   weight update, health-checked on the image's golden utterance before the commit.

The host shares its work folder and the audio folder with the guest (virtio-9p, at the same
paths), so a command names the host's files as they are; the model is the installed one."""

from __future__ import annotations

import hashlib
import os
import random
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from amc.common.errors import InputError
from amc.common.progress import quiet
from amc.ontarget.linux_board import Board, _checked, check_board
from amc.ontarget.ota import CLIENTS, ota_installs
from amc.ontarget.ota import RIG_FILES as OTA_FILES
from amc.ontarget.recording import (GRAPHS, WORK_ROOT, Settings, compare_outputs, default_data,
                                    make_weight_update, resolve_bundle)
from amc.targets.presets import Target

MODEL = "/var/lib/amc/model"
PENDING = "/var/lib/amc/pending"
KEYRING = "/etc/amc/keys"
COUNTER = "/var/lib/amc/installed-version"
UNIT = "amc-patch.service"
UNIT_STARTED = r"Starting amc-patch\.service"
STATUS_LINE = re.compile(r"amc-patch-status: (\S.*)")
E_NOROLLBACK = 13   # amc-patch: "backup area no longer holds every touched page: rollback impossible, resume instead"
RIG_FILES = {
    # the boot step's lines on the serial console, and the journal's state before it resumes,
    # where the rig reads them
    "etc/systemd/system/amc-patch.service.d/rig.conf": f"""\
[Service]
StandardOutput=journal+console
StandardError=journal+console
ExecStartPre=-/bin/sh -c '/usr/bin/amc-patch status --dir {MODEL} --counter {COUNTER} | sed "s/^/amc-patch-status: /"'
""",
}


class SystemBoard(Board):
    """The booted system as a `Board`: the image's amc-runner and amc-patch, its installed
    bundle, each command a transient systemd service."""

    def __init__(self, target: Target, vm, bundle: Path, runner, patch_cli: Path, work: Path):
        self.target, self.vm, self.work = target, vm, work
        self.qemu = ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72"]
        self.runtime = f"executorch {runner.executorch.version} (the image's amc-runner, under systemd)"
        self.runner, self.library_path = runner, []
        self.programs = {str(runner.program): "/usr/bin/amc-runner", str(patch_cli): "/usr/bin/amc-patch"}
        self.paths = {str(Path(bundle)): MODEL}
        self.units = 0

    def run(self, program, args: list, what: str, timeout: float = 900, accept: tuple[int, ...] = (0,)) -> str:
        self.units += 1
        out, err = self.work / f"unit-{self.units}.out", self.work / f"unit-{self.units}.err"
        argv = [self.programs.get(str(program), str(program)), *(self.paths.get(str(a), str(a)) for a in args)]
        status, _ = self.vm.run(f"systemd-run --quiet --wait --pipe --collect --unit=amc-test-{self.units} "
                                f"{shlex.join(argv)} >{out} 2>{err}", timeout)
        result = subprocess.CompletedProcess(argv, status, out.read_bytes(), err.read_bytes())
        return _checked(self.target, result, what, accept)


# ---- the system, with the overlay -------------------------------------------------------------------

def overlay_files(target: Target, bundle: Path, key: Path, data: Path, work: Path,
                  report=quiet) -> dict[str, tuple[bytes, int]]:
    """The `amc image` overlay for `bundle`, trusting `key`, with its golden utterance picked from
    the audio folder `data`, as path -> (bytes, mode); plus the rig's drop-in and what an
    integrator's image gives the OTA clients."""
    from amc.compiler.image import build_image

    overlay = work / "overlay"
    build_image(target.name, bundle, overlay, [key], report=report, golden_data=data)
    files = {p.relative_to(overlay).as_posix(): (p.read_bytes(), p.stat().st_mode & 0o777)
             for p in sorted(overlay.rglob("*")) if p.is_file()}
    shutil.rmtree(overlay)
    return files | {path: (text.encode(), 0o644) for path, text in (RIG_FILES | OTA_FILES).items()}


def prepare_rootfs(image, files: dict, into: Path) -> Path:
    """A copy of the system's root file system with `files` written in and the boot unit enabled."""
    from amc.targets.system import install_overlay

    subprocess.run(["cp", "--sparse=always", str(image.rootfs), str(into)], check=True)
    install_overlay(into, files, enable=(UNIT,))
    return into


def model_hashes(bundle: Path) -> dict[str, str]:
    from amc.compiler.manifest import read_manifest

    manifest = read_manifest(bundle)
    names = sorted({manifest["graphs"][g]["file"] for g in GRAPHS})
    return {name: hashlib.sha256((Path(bundle) / name).read_bytes()).hexdigest() for name in names}


def device_hashes(vm, names) -> dict[str, str]:
    output = vm.sh("cd " + MODEL + " && sha256sum " + " ".join(shlex.quote(n) for n in sorted(names)))
    return {line.split()[1]: line.split()[0] for line in output.splitlines() if len(line.split()) == 2}


def wait_boot_unit(vm, timeout: float = 600) -> str:
    """The boot unit's end state once it has run: "active" (finished) or "failed"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = vm.sh(f"systemctl is-active {UNIT}", check=False).strip()
        if state in ("active", "failed"):
            return state
        time.sleep(1)
    raise InputError(f"{UNIT} did not finish in {timeout:.0f} s on the emulated system")


# ---- the whole test -----------------------------------------------------------------------------------

def test_booted_system(target: Target, bundle: Path | str | None, data: Path | str | None, settings: Settings,
                       power_cuts: int = 0, report=quiet) -> dict:
    """Steps 1-4 above; returns the figures."""
    from amc.compiler.bundle import load_bundle
    from amc.ontarget.linux_board import patch_tool
    from amc.targets.amc_runner import build_runner
    from amc.targets.qemu import need_tool
    from amc.targets.system import system_image
    from amc.targets.vm import BootedSystem

    started = time.monotonic()
    need_tool("qemu-system-aarch64", "qemu-system-arm")
    need_tool("debugfs", "e2fsprogs")
    bundle = resolve_bundle(target, bundle, "executorch", report)
    host_bundle = load_bundle(bundle)
    mflops = settings.mflops or host_bundle.config.nominal_mflops
    image = system_image(target, report)
    runner, patch_cli = build_runner(target.name, report), patch_tool(target, report)
    data = Path(data) if data is not None else default_data(report)
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{target.name}-system-", dir=WORK_ROOT))
    logs = WORK_ROOT / f"{target.name}-system-logs"
    shutil.rmtree(logs, ignore_errors=True)
    try:
        signing_key = os.urandom(32)       # this test's release key: the image trusts it alone
        new_bundle, blob, public = make_weight_update(bundle, work, version=2, key=signing_key)
        key = work / "update.pub"
        key.write_bytes(public)
        report("system: install the image", 0, 1)
        files = overlay_files(target, bundle, key, data, work, report)
        rootfs = prepare_rootfs(image, files, work / "rootfs.ext4")
        report("system: install the image", 1, 1)
        with BootedSystem(image, rootfs, logs, shares=(work, data)) as vm:
            report("system: boot", 0, 1)
            vm.start()
            boot_seconds = vm.connect()
            report("system: boot", 1, 1)
            system = {"booted": True, "boot_seconds": round(boot_seconds, 1),
                      "init": vm.sh("cat /proc/1/comm").strip(), "kernel": vm.sh("uname -r").strip(),
                      "machine": vm.sh("uname -m").strip(), "boot_unit": wait_boot_unit(vm)}
            board = SystemBoard(target, vm, bundle, runner, patch_cli, work)
            checks, recording = check_board(board, bundle, host_bundle, data, settings, mflops, work, report)
            patch = patch_at_boot(vm, board, bundle, new_bundle, blob, recording, report) if settings.patch else None
            ota = ota_installs(vm, new_bundle, signing_key, 3, work, report) if patch and patch["patched_equal"] \
                else None
        cuts = power_cut_sweep(image, files, bundle, new_bundle, blob, power_cuts, work, logs, report) \
            if power_cuts else None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "target": target.name, "bundle": str(bundle), "backend": host_bundle.backend, "system": image.describe(),
        "emulator": "qemu-system-aarch64 -M virt -cpu cortex-a72", "runtime": board.runtime,
        **system, **checks,
        "patched_equal": patch["patched_equal"] if patch else None, "patch": patch,
        "ota": ota, "power_cuts": cuts, "logs": str(logs),
        "seconds": round(time.monotonic() - started, 1),
    }
    result["ok"] = bool(checks["ok"] and system["boot_unit"] == "active" and result["patched_equal"] is not False
                        and (ota is None or all(ota[c] == "ok" for c in CLIENTS))
                        and (cuts is None or cuts["corrupted"] == 0))
    return result


def patch_at_boot(vm, board: SystemBoard, bundle: Path, new_bundle: Path, blob: Path, recording, report=quiet) -> dict:
    """Step 3: the blob waits in the pending folder; after a reboot the boot unit has applied it."""
    report("system: patch at boot", 0, 2)
    vm.sh(f"cp {shlex.quote(str(blob))} {PENDING}/update.amcp && sync")
    boot_seconds = vm.reboot()
    unit = wait_boot_unit(vm)
    applied = vm.sh(f"ls {PENDING}/applied/ 2>/dev/null", check=False).split()
    expected = model_hashes(new_bundle)
    files_equal = device_hashes(vm, expected) == expected
    report("system: patch at boot", 1, 2)
    from amc.compiler.bundle import load_bundle
    from amc.ontarget.recording import host_outputs

    manifest = load_bundle(new_bundle).manifest
    comparison = compare_outputs(manifest, host_outputs(load_bundle(new_bundle), recording.inputs),
                                 board.run_graphs(bundle, recording.inputs, board.work))
    report("system: patch at boot", 2, 2)
    log = vm.sh(f"journalctl -b -u {UNIT} -o cat", check=False)
    return {"blob_bytes": blob.stat().st_size, "boot_unit": unit, "boot_seconds": round(boot_seconds, 1),
            "moved_to_applied": "update.amcp" in applied, "files_equal": files_equal,
            "max_int8_step_diff": comparison["max_int8_step_diff"],
            "patched_equal": bool(unit == "active" and files_equal and comparison["max_int8_step_diff"] == 0.0),
            "boot_log": [line for line in log.splitlines() if "amc-" in line][-4:]}


# ---- power cuts ------------------------------------------------------------------------------------

def power_cut_sweep(image, files: dict, bundle: Path, new_bundle: Path, blob: Path, cuts: int, work: Path,
                    logs: Path, report=quiet, seed: int = 0, most_boots: int = 4) -> dict:
    """Step 4. The image with the blob pending boots; QEMU is killed `delay` seconds after the
    boot unit started (delays spread over one uncut apply's duration, a few past it), then the
    system boots again until the boot unit has finished, at most `most_boots` times. Every third
    cut asks for a rollback instead: the next boot masks the boot unit and runs `amc-patch
    rollback` by hand; where amc-patch refuses it because the apply's backup area no longer holds
    every touched page (AMC_E_NOROLLBACK: a one-phase apply keeps a few pages' backups, not all),
    the device does what the refusal says and resumes. Corrupted: a model equal to neither the new
    bundle (or, rolled back, the old one) after that."""
    from amc.targets.vm import BOOT_TIMEOUT, BootedSystem

    base, new = model_hashes(bundle), model_hashes(new_bundle)
    pending = files | {"var/lib/amc/pending/update.amcp": (blob.read_bytes(), 0o644)}
    prepared = prepare_rootfs(image, pending, work / "prepared.ext4")
    rootfs = work / "cut.ext4"
    rng = random.Random(seed)
    # one apply without a cut, to spread the cuts over its duration
    report("power cuts: an uncut apply", 0, cuts + 1)
    subprocess.run(["cp", "--sparse=always", str(prepared), str(rootfs)], check=True)
    with BootedSystem(image, rootfs, logs / "uncut") as vm:
        vm.start()
        vm.wait_console(UNIT_STARTED, BOOT_TIMEOUT)
        began = time.monotonic()
        vm.wait_console(r"Finished amc-patch\.service|Failed to start amc-patch\.service", BOOT_TIMEOUT)
        duration = time.monotonic() - began
    outcomes, states, boots_needed, corrupted = [], {}, [], 0
    for index in range(cuts):
        report("power cuts", index + 1, cuts + 1)
        rollback = index % 3 == 2
        delay = duration * (index + rng.random()) / cuts * 1.1
        subprocess.run(["cp", "--sparse=always", str(prepared), str(rootfs)], check=True)
        with BootedSystem(image, rootfs, logs / f"cut-{index}") as vm:
            vm.start()
            vm.wait_console(UNIT_STARTED, BOOT_TIMEOUT)
            time.sleep(delay)
            vm.power_cut()
            boots, final, refused = 0, None, False
            while boots < most_boots:
                boots += 1
                vm.start("systemd.mask=amc-patch.service" if rollback else "")
                vm.connect()
                if rollback:
                    state = vm.sh(f"amc-patch status --dir {MODEL} --counter {COUNTER}", check=False).strip()
                    status, _ = vm.run(f"amc-patch rollback --dir {MODEL} --keyring {KEYRING} {PENDING}/update.amcp")
                    if status == E_NOROLLBACK:
                        refused = True
                        vm.sh(f"amc-patch resume --dir {MODEL} --keyring {KEYRING} --counter {COUNTER} "
                              f"{PENDING}/update.amcp", check=False)
                else:
                    wait_boot_unit(vm)
                    found = STATUS_LINE.search(vm.console())
                    state = found.group(1).strip() if found else "unit did not start"
                if boots == 1:
                    key = re.sub(r" (installed_version|counter|done_pages)=\S+", "", state) or state
                    states[key] = states.get(key, 0) + 1
                final = device_hashes(vm, new)
                if final == new or (rollback and final == base):
                    break
                vm.power_off()
        ok = final == new or (rollback and final == base)
        corrupted += not ok
        boots_needed.append(boots)
        outcomes.append({"delay_s": round(delay, 3), "rollback": rollback, "rollback_refused": refused,
                         "state_after_cut": state,
                         "ended": "new" if final == new else "old" if final == base else "corrupted",
                         "boots": boots})
    return {"tried": cuts, "corrupted": corrupted, "uncut_apply_s": round(duration, 2),
            "boots_needed": {"max": max(boots_needed, default=0), "mean": round(sum(boots_needed) / max(1, cuts), 2)},
            "states_after_cut": states, "rolled_back": sum(o["ended"] == "old" for o in outcomes),
            "rollbacks_refused": sum(o["rollback_refused"] for o in outcomes),
            "cuts": outcomes}
