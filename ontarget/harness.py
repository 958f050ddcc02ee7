"""`amc test --target T`: prove a bundle on the board's own CPU, under QEMU.

For a Linux board (rpi4) the steps run top to bottom:

1. tools: the cross compilers, the sysroot and qemu-user, or a one-line install hint;
2. the bundle: the one given, or `out/<target>-<backend>` (compiled from the reference
   checkpoint when missing); it must be for this target;
3. the device runtime: for an ExecuTorch bundle the executorch aarch64 wheel (cached) and
   amc-runner built against it; for a TFLite bundle the board's own CPython with the aarch64
   wheels of numpy and ai-edge-litert (targets/board_python.py) running device/board/tflite_board.py,
   the graphs also in LiteRT's reference kernels (`reference_kernels`: the same integers on
   every instruction set, while XNNPACK's int8 kernels for ARM and x86-64 may round apart);
4. graphs: a few utterances streamed on the host record every graph's inputs (the arbitrator
   with the live backlog, both branches with the carried state); the board runs each graph on
   those inputs and its outputs are compared with the host's from the same runtime, in
   quantization steps of each output;
5. streaming: the same utterances end to end through amc-runner on the board: routes,
   transcripts and end-of-utterance latency against `evaluate_bundle` on the host;
6. patch: a weight update of the bundle as a signed `.amcp` blob, applied in place on the board
   by the runtime's `amc-patch` (resume first, as at boot), then the patched graphs run on the
   board and are compared with the new bundle's outputs on the host.

For a microcontroller preset (cortex-m4, cortex-m7) the model half is checked on the host by the
interpreter an MCU runs, TFLite Micro, against ai-edge-litert (`test_mcu_reference`); the patch
runtime's half runs bare-metal under qemu-system-arm in `amc runtime test`:

1. tools: tflite-micro and ai-edge-litert;
2. the bundle: a TFLite bundle for this preset (the one given, or `out/<target>-tflite`); every
   graph must run in TFLite Micro in the manifest's arenas (`check_arenas`);
3. graphs: inputs recorded as in step 4 above from the LiteRT stream; each graph runs on them in
   TFLite Micro with the arena the manifest records for it (what the firmware allocates), and
   its outputs are compared with LiteRT's, in quantization steps; every operator is traced in
   both interpreters to find which kernels round apart and by how much (`kernel_differences`);
4. streaming: the same utterances end to end with every graph in TFLite Micro (the arbitrator
   with the live backlog, `evaluate_bundle`) against the LiteRT stream: routes and transcripts;
5. patch: the weight update of step 6 above applied to a copy of the bundle by the C runtime's
   host `amc-patch` (a bundle's graph files are larger than the bare-metal test program's
   buffers), then the patched graphs run in TFLite Micro against the new bundle's.

TFLite Micro and LiteRT round some kernels apart by one step (docs/benchmarks.md), and a
recurrent int8 graph can carry such a step far, so `ok` asks for at most one step per kernel on
equal inputs and equal routes and transcripts, and reports the graph outputs' differences."""


from __future__ import annotations

from pathlib import Path

from amc.common.errors import InputError
from amc.common.progress import quiet
from amc.ontarget.linux_board import test_linux_board
from amc.ontarget.mcu import test_mcu_reference
from amc.ontarget.recording import Settings
from amc.targets.presets import get_target


def test_on_target(target_name: str = "rpi4", bundle: Path | str | None = None, backend: str | None = None,
                   data: Path | str | None = None, settings: Settings | None = None, report=quiet,
                   system: bool = False, power_cuts: int = 0) -> dict:
    """Run the on-target checks for a preset; returns the figures (see the module docstring).
    `system`: on the booted emulated system instead (amc.ontarget.system), with `power_cuts`."""
    settings = settings or Settings()
    target = get_target(target_name)
    if not target.linux:
        return test_mcu_reference(target, bundle, data, settings, report)
    if not target.triple:
        raise InputError("`amc test` runs the board presets under QEMU (rpi4, rpi3, cortex-m4, cortex-m7); "
                         "host bundles are verified by `amc compile` itself")
    if system or power_cuts:
        if not system or target.name != "rpi4":
            raise InputError("--power-cuts goes with --system, and the booted system is the rpi4 preset's "
                             "(Debian arm64)")
        if backend not in (None, "executorch"):
            raise InputError("the booted system runs the image's amc-runner: an ExecuTorch bundle (--backend executorch)")
        from amc.ontarget.system import test_booted_system
        return test_booted_system(target, bundle, data, settings, power_cuts, report)
    return test_linux_board(target, bundle, backend, data, settings, report)
