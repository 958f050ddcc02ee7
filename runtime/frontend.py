"""The host side of the C speech front end (device/frontend): its table file, its CMake builds for
each board, its sizes, and a ctypes binding of the same C, so the host computes the frames a
device computes, to the bit.

The tables come from `model.features.LogMel` itself (its padded hann window, its mel filterbank),
so the C multiplies by the training weights, not by a recomputation of them."""

from __future__ import annotations

import ctypes
import functools
import struct
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from amc.common.atomic import write_file
from amc.common.errors import AmcError, InputError
from amc.common.paths import build_root, device_sources
from amc.common.progress import Report, quiet
from amc.model.config import FeatureConfig
from amc.model.features import LogMel
from amc.runtime.build import APT_HINT, TOOLCHAIN_FILES, configure_and_build
from amc.runtime.tools import last_line, run_tool
from amc.targets.presets import Target, get_target
from amc.targets.qemu import need_tool

FRONTEND_DIR = device_sources("frontend")
BUILD_ROOT = build_root() / "frontend"
MAGIC = b"AMFE"
VERSION = 1
HEADER = struct.Struct("<4sHHHHHHIfII")    # amc_frontend.h: the table file's 32-byte header


# ---- the table file --------------------------------------------------------------------------

def padded_window(features: LogMel) -> np.ndarray:
    """The hann window zero-padded to n_fft, centered, as torch.stft pads a shorter window."""
    n_fft = features.config.n_fft
    window = np.zeros(n_fft, np.float32)
    left = (n_fft - features.window_length) // 2
    window[left:left + features.window_length] = features.window.numpy()
    return window


def table_bytes(config: FeatureConfig) -> bytes:
    """The table file amc_frontend.h describes, for `config`."""
    features = LogMel(config)
    n_fft = config.n_fft
    k = np.arange(n_fft // 2)
    twiddles = np.exp(-2j * np.pi * k / n_fft)        # float64, then rounded once to float32
    twiddles = np.stack([twiddles.real, twiddles.imag], axis=1).astype(np.float32)
    spans, weights = [], []
    for column in features.filters.numpy().T:         # one mel: its nonzero bins, in order
        nonzero = np.flatnonzero(column)
        first, count = (int(nonzero[0]), int(nonzero[-1] - nonzero[0] + 1)) if nonzero.size else (0, 0)
        spans.append((first, count))
        weights.append(column[first:first + count])
    weights = np.concatenate(weights).astype("<f4")
    body = b"".join([padded_window(features).astype("<f4").tobytes(), twiddles.astype("<f4").tobytes(),
                     np.array(spans, "<u2").tobytes(), weights.tobytes()])
    total = HEADER.size + len(body) + 4
    try:
        header = HEADER.pack(MAGIC, VERSION, n_fft, features.hop, config.n_mels, config.stack,
                             features.window_length, config.sample_rate, config.log_floor, weights.size, total)
    except struct.error:
        raise InputError(f"feature config out of the front end's range: {config}") from None
    data = header + body
    return data + struct.pack("<I", zlib.crc32(data))


def write_tables(config: FeatureConfig, path: Path) -> Path:
    """Write `frontend.bin` for `config` to `path` (atomically)."""
    write_file(Path(path), table_bytes(config))
    return Path(path)


# ---- builds ----------------------------------------------------------------------------------

@dataclass
class FrontendBuild:
    target: str
    build_dir: Path
    library: Path                    # libamc_frontend.a
    shared_library: Path | None      # libamc_frontend.so (Linux builds)
    cli: Path                        # amc-frontend (.elf on bare metal)
    sizes: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


def build_frontend(target_name: str = "host", report: Report = quiet) -> FrontendBuild:
    """Configure and build device/frontend for a board preset under build/frontend/<target>/."""
    target = get_target(target_name)
    need_tool("cmake", "cmake")
    need_tool(f"{target.triple}-gcc" if target.triple else "cc", APT_HINT[target.triple])
    out = BUILD_ROOT / target.name
    report(f"build front end for {target.name}", 0, 2)
    cmd = ["cmake", "-S", str(FRONTEND_DIR), "-B", str(out), "-DCMAKE_BUILD_TYPE=Release",
           f"-DAMC_TARGET_CFLAGS={' '.join(target.cflags)}"]
    if target.triple:
        toolchain = device_sources("runtime") / "cmake" / TOOLCHAIN_FILES[target.triple]
        cmd.append(f"-DCMAKE_TOOLCHAIN_FILE={toolchain}")
    configure_and_build(cmd, out, f"the front end for {target.name}")
    report(f"build front end for {target.name}", 2, 2)
    return FrontendBuild(target.name, out, out / "libamc_frontend.a",
                         out / "libamc_frontend.so" if target.linux else None,
                         out / ("amc-frontend" if target.linux else "amc-frontend.elf"),
                         frontend_sizes(target, out))


def frontend_sizes(target: Target, out: Path) -> dict:
    """Flash (text + data of amc_frontend.c) and RAM (sizeof amc_frontend_t) on the board, and the
    core's undefined symbols (none: no libc, no libm). The tables add table_bytes(config) of flash
    or RAM, wherever the firmware keeps them."""
    tool = {name: f"{target.triple}-{name}" if target.triple else name for name in ("gcc", "size", "nm")}
    core = out / "libamc_frontend.a"                  # one object: amc_frontend.c
    text, data, bss = map(int, run_tool([tool["size"], str(core)]).stdout.splitlines()[1].split()[:3])
    probe = out / "state_size.c"
    probe.write_text('#include "amc_frontend.h"\namc_frontend_t amc_frontend_state_probe;\n')
    run_tool([tool["gcc"], *target.cflags, "-fno-common", "-I", str(FRONTEND_DIR), "-c", str(probe),
              "-o", str(probe.with_suffix(".o"))])
    symbols = [line.split() for line in run_tool([tool["nm"], "-S", str(probe.with_suffix(".o"))]).stdout.splitlines()]
    state = next((int(f[1], 16) for f in symbols if f[-1:] == ["amc_frontend_state_probe"]), None)
    undefined = [line.split()[-1] for line in run_tool([tool["nm"], "-u", str(core)]).stdout.splitlines()
                 if line.split()[:1] == ["U"]]
    return {"text_bytes": text, "data_bytes": data, "bss_bytes": bss, "state_bytes": state,
            "undefined_symbols": undefined}


# ---- the binding -----------------------------------------------------------------------------

_FRAME_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t)


@functools.cache
def _library() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(build_frontend("host").shared_library))
    lib.amc_frontend_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, _FRAME_FN, ctypes.c_void_p]
    lib.amc_frontend_push.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    lib.amc_frontend_reset.argtypes = [ctypes.c_void_p]
    lib.amc_frontend_reset.restype = None
    lib.amc_frontend_frame_dim.argtypes = [ctypes.c_void_p]
    lib.amc_frontend_frame_dim.restype = ctypes.c_size_t
    lib.amc_frontend_state_size.restype = ctypes.c_size_t
    lib.amc_frontend_strerror.restype = ctypes.c_char_p
    lib.amc_frontend_log.argtypes = [ctypes.c_float]
    lib.amc_frontend_log.restype = ctypes.c_float
    return lib


class CFrontEnd:
    """The C front end in this process: int16 PCM -> (frames, frame_dim) float32, as a device
    computes it. `push` streams an utterance chunk by chunk; `frames` computes a whole one."""

    def __init__(self, config: FeatureConfig):
        self._open(table_bytes(config))

    @classmethod
    def from_tables(cls, tables: bytes) -> "CFrontEnd":
        """A front end on a table file's bytes; a bad file is an InputError naming its fault."""
        front_end = cls.__new__(cls)
        front_end._open(tables)
        return front_end

    def _open(self, tables: bytes) -> None:
        self._lib = _library()
        self._tables = (ctypes.c_uint8 * max(len(tables), 1)).from_buffer_copy(tables.ljust(1, b"\0"))
        self._state = (ctypes.c_uint64 * (self._lib.amc_frontend_state_size() // 8 + 1))()
        self._done: list[np.ndarray] = []
        self._on_frame = _FRAME_FN(self._collect)     # kept: C holds the pointer
        rc = self._lib.amc_frontend_init(self._state, self._tables, len(tables), self._on_frame, None)
        if rc:
            raise InputError(f"front-end tables: {self._lib.amc_frontend_strerror(rc).decode()}")
        self.frame_dim = self._lib.amc_frontend_frame_dim(self._state)

    def _collect(self, ctx, frame, dim: int) -> None:
        self._done.append(np.ctypeslib.as_array(frame, (dim,)).copy())

    def reset(self) -> None:
        """Start a new utterance."""
        self._lib.amc_frontend_reset(self._state)

    def push(self, pcm: np.ndarray) -> np.ndarray:
        """The frames that the samples `pcm` (int16) complete, (frames, frame_dim) float32."""
        pcm = np.ascontiguousarray(pcm)
        if pcm.dtype != np.int16 or pcm.ndim != 1:
            raise InputError(f"the front end takes 1-D int16 PCM, not {pcm.ndim}-D {pcm.dtype}")
        self._done = []
        rc = self._lib.amc_frontend_push(self._state, pcm.ctypes.data, pcm.size)
        if rc:
            raise AmcError(f"front end: {self._lib.amc_frontend_strerror(rc).decode()}")
        return np.array(self._done, np.float32).reshape(-1, self.frame_dim)

    def frames(self, pcm: np.ndarray) -> np.ndarray:
        """The frames of one whole utterance."""
        self.reset()
        return self.push(pcm)


def c_log(x: float) -> float:
    """The front end's natural log (amc_frontend_log) of one float32."""
    return _library().amc_frontend_log(x)


# ---- the front end in a bundle ---------------------------------------------------------------

BUNDLE_FILE = "frontend.bin"


def manifest_entry(config: FeatureConfig, tables: bytes) -> dict:
    """What a bundle's manifest says of its front end: the table file and the C that reads it,
    what goes in (PCM) and what comes out (the frames every graph's `features` input takes)."""
    import hashlib
    return {
        "file": BUNDLE_FILE, "bytes": len(tables), "sha256": hashlib.sha256(tables).hexdigest(),
        "implementation": "device/frontend/amc_frontend.c (C99; the same code on the host, the Pis and the MCUs)",
        "input": {"dtype": "int16", "sample_rate": config.sample_rate, "channels": 1,
                  "layout": "PCM S16_LE mono, any chunking"},
        "output": {"name": "features", "dtype": "float32", "shape": [1, config.frame_dim],
                   "every_ms": config.frame_ms, "rows": config.stack, "row_ms": config.hop_ms},
        "features": asdict(config),
    }


def pcm_of(path: Path | str) -> np.ndarray:
    """The int16 samples of a WAV file amc takes (16 kHz mono 16-bit; checked)."""
    from amc.model.corpus.audio_folder import load_wav
    return np.round(load_wav(path) * 32768.0).astype(np.int16)


def quantize(frames: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Frames as the first graph's int8 `features` input holds them."""
    return np.clip(np.round(frames / scale) + zero_point, -128, 127).astype(np.int16)


def compare_frames(device: list[np.ndarray], host: list[np.ndarray], scale: float, zero_point: int) -> dict:
    """Device (C) frames against host (training) frames, utterance by utterance: float difference
    and how many int8 input values differ, in quantization steps."""
    values = identical = worst = 0
    max_abs = 0.0
    for d, h in zip(device, host):
        h = np.asarray(h, np.float32)
        if d.shape != h.shape:
            raise AmcError(f"the front end made {d.shape[0]} frames where the host made {h.shape[0]}")
        if not d.size:
            continue
        steps = np.abs(quantize(d, scale, zero_point) - quantize(h, scale, zero_point))
        values += steps.size
        identical += int((steps == 0).sum())
        worst = max(worst, int(steps.max()))
        max_abs = max(max_abs, float(np.abs(d - h).max()))
    return {"utterances": len(device), "values": values,
            "int8_identical_fraction": round(identical / max(1, values), 6),
            "max_step_diff": worst, "max_abs_diff": max_abs, "scale": scale, "zero_point": zero_point}


def against_graph_inputs(manifest: dict, device: list[np.ndarray], training: list[np.ndarray]) -> dict:
    """`compare_frames` through the `features` input quantization of each of the bundle's graphs,
    and the worst of them."""
    graphs = {}
    for graph, entry in manifest["graphs"].items():
        features = next(t for t in entry["inputs"] if t["name"] == "features")
        graphs[graph] = compare_frames(device, training, features["scale"], features["zero_point"])
    return {"graphs": graphs,
            "int8_identical_fraction": min(g["int8_identical_fraction"] for g in graphs.values()),
            "max_step_diff": max(g["max_step_diff"] for g in graphs.values()),
            "max_abs_diff": max(g["max_abs_diff"] for g in graphs.values())}


def frames_on_board(target_name: str, tables: bytes, wavs: list[Path], work: Path,
                    report: Report = quiet) -> list[np.ndarray]:
    """The frames the front end built for a board makes of WAV files: under qemu-user on a
    Linux board, bare metal under qemu-system-arm (files by semihosting) on a microcontroller."""
    import shutil
    import subprocess

    from amc.runtime.c_tests import runner_command

    command = runner_command(get_target(target_name), build_frontend(target_name).cli,
                             [BUNDLE_FILE, "in.wav", "out.f32"])
    work.mkdir(parents=True, exist_ok=True)
    (work / BUNDLE_FILE).write_bytes(tables)
    n_mels, stack = struct.unpack_from("<HH", tables, 10)
    frames = []
    for done, wav in enumerate(wavs):
        report(f"front end on {target_name}", done, len(wavs))
        shutil.copyfile(wav, work / "in.wav")
        (work / "out.f32").unlink(missing_ok=True)
        result = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=600)
        if result.returncode or not (work / "out.f32").exists():
            raise AmcError(f"the front end on {target_name} failed on {wav}: {last_line(result)}")
        frames.append(np.fromfile(work / "out.f32", "<f4").reshape(-1, n_mels * stack))
    report(f"front end on {target_name}", len(wavs), len(wavs))
    return frames
