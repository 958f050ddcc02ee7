"""The board side of `amc test` for TFLite bundles: a script that a Linux board's own CPython runs
with numpy and ai-edge-litert, and nothing else (no torch, no amc).

    python3 tflite_board.py graph  BUNDLE fast|slow|arbitrator INPUTS.amcr OUTPUTS.amcr [--kernels reference]
    python3 tflite_board.py stream BUNDLE FEATURES.amcf [--mflops X] [--threshold P]
    python3 tflite_board.py transcribe BUNDLE FILE.wav... --frontend-lib LIB.so [--mflops X] [--threshold P]
    python3 tflite_board.py features BUNDLE FILE.wav... OUT.amcf --frontend-lib LIB.so
    python3 tflite_board.py listen BUNDLE - --frontend-lib LIB.so [--mflops X]   (raw S16_LE PCM on stdin)
    python3 tflite_board.py info   BUNDLE

`transcribe` and `features` make the frames from PCM with the C front end (device/frontend, the
board's build of libamc_frontend.so through ctypes) on the bundle's frontend.bin, as amc-runner
does, and stream them or write them as AMCF.

`graph` runs one graph on records of float inputs and writes its float outputs, as the host's
`TfliteRunner` does: inputs quantized with the interpreter's own input parameters (numpy's round
half to even), outputs dequantized with its output parameters; with `--kernels reference` in
LiteRT's reference kernels instead of the optimized ones (XNNPACK).

`stream` streams utterances of feature frames as amc-runner does (device/runner/runner.hpp,
`stream_utterance`) and as `evaluate_bundle` does on the host (model/evaluate.py): before each
frame the arbitrator sees (features, backlog_ms, h) and the frame goes to the fast graph when
softmax(route_logits)[1] > route_threshold; h and c come from the branch that ran; the backlog
follows model/routing.py, b_0 = 0, b_{t+1} = max(0, b_t + cost_t - frame_ms), with
cost_t = (arbitrator + branch MFLOPs) * 1000 / speed and MFLOPs = 2 * macs_per_frame_nonzero / 1e6.
It prints amc-runner's report lines (`utterance`, `routes`, `text`, `summary`), which
`amc.targets.amc_runner.parse_stream` reads.

The record (AMCR) and feature (AMCF) files are those of targets/amc_runner.py."""

from __future__ import annotations

import json
import platform
import struct
import sys

import numpy as np

SIGNATURE = "serving_default"
GRAPHS = ("fast", "slow", "arbitrator")
BLANK = 0
DTYPES = {0: np.dtype("<f4"), 1: np.dtype("i1"), 2: np.dtype("<i2")}
CODES = {np.dtype("float32"): 0, np.dtype("int8"): 1, np.dtype("int16"): 2}


class BadInput(Exception):
    pass


# ---- the bundle ----------------------------------------------------------------------------------

class Graph:
    """One .tflite in ai-edge-litert: float arrays in, float arrays out (TfliteRunner's contract)."""

    def __init__(self, path: str, spec: dict, kernels: str = "optimized"):
        """`kernels`: "optimized" (the default resolver: XNNPACK and the optimized builtin
        kernels, what a device runs) or "reference" (LiteRT's reference kernels, plain C++ that
        computes the same integers on every instruction set)."""
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        resolver = {"optimized": OpResolverType.AUTO, "reference": OpResolverType.BUILTIN_REF}.get(kernels)
        if resolver is None:
            raise BadInput(f"--kernels: optimized or reference, not '{kernels}'")
        interpreter = Interpreter(model_path=path, num_threads=1, experimental_op_resolver_type=resolver)
        self.runner = interpreter.get_signature_runner(SIGNATURE)
        details = self.runner.get_input_details()
        self.inputs = [(f"args_{i}", details[f"args_{i}"]) for i in range(len(spec["inputs"]))]
        out_details = self.runner.get_output_details()
        self.outputs = [(f"output_{i}", out_details[f"output_{i}"]) for i in range(len(spec["outputs"]))]

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        result = self.runner(**{name: quantize(a, d) for (name, d), a in zip(self.inputs, arrays)})
        return [dequantize(result[name], d) for name, d in self.outputs]


def quantize(array: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    if not scale:
        return np.asarray(array, dtype)
    info = np.iinfo(dtype)
    return np.clip(np.rint(np.asarray(array, np.float32) / scale) + zero_point, info.min, info.max).astype(dtype)


def dequantize(array: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if not scale:
        return np.asarray(array, np.float32)
    return ((np.asarray(array, np.float32) - zero_point) * scale).astype(np.float32)


class Bundle:
    """manifest.json and the graphs it names; the routing constants of the model's config."""

    def __init__(self, directory: str, graphs: tuple[str, ...] = GRAPHS, kernels: str = "optimized"):
        with open(f"{directory}/manifest.json") as handle:
            manifest = json.load(handle)
        if manifest.get("schema") != "amc-bundle":
            raise BadInput(f"{directory}/manifest.json: not an amc bundle manifest")
        if manifest.get("backend") != "tflite":
            raise BadInput(f"{directory}: a '{manifest.get('backend')}' bundle; this script runs TFLite bundles")
        self.target = manifest["target"]
        config = manifest["model"]["config"]
        features = config["features"]
        self.vocabulary = list(config["vocabulary"])
        self.route_threshold = float(config["route_threshold"])
        self.nominal_mflops = float(config["nominal_mflops"])
        self.frame_ms = features["hop_ms"] * features["stack"]
        self.frame_dim = int(features["n_mels"] * features["stack"])
        self.state_dim = int(config["layers"] * config["hidden"])
        specs = manifest["graphs"]
        self.macs = {name: specs[name]["macs_per_frame_nonzero"] for name in GRAPHS}
        self.graphs = {name: Graph(f"{directory}/{specs[name]['file']}", specs[name], kernels) for name in graphs}

    def costs_ms(self, mflops: float) -> dict[str, float]:
        """BranchCosts(2 * macs / 1e6).ms(mflops), in model/routing.py's order of operations."""
        scale = 1000.0 / mflops
        return {name: 2 * self.macs[name] / 1e6 * scale for name in GRAPHS}


# ---- streaming ------------------------------------------------------------------------------------

def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def greedy_decode(best: list[int], vocabulary: list[str]) -> str:
    out, previous = [], BLANK
    for label in best:
        if label != previous and label != BLANK:
            out.append(vocabulary[label])
        previous = label
    return "".join(out)


def stream_utterance(bundle: Bundle, frames, costs: dict[str, float], threshold: float, on_step=None) -> dict:
    """`frames`: any iterable of frames, consumed as they come; `on_step(best)` after each."""
    h = np.zeros((1, bundle.state_dim), np.float32)
    c = np.zeros((1, bundle.state_dim), np.float32)
    backlog, fast, backlogs, best = 0.0, [], [], []
    for frame in frames:
        backlogs.append(backlog)
        x = frame[None, :].astype(np.float32)
        route_logits = bundle.graphs["arbitrator"](x, np.array([[backlog]], np.float32), h)[0]
        go_fast = bool(softmax(route_logits)[0, 1] > threshold)
        cost = 0.0 + costs["arbitrator"]
        logits, h, c = bundle.graphs["fast" if go_fast else "slow"](x, h, c)
        best.append(int(np.argmax(logits[0])))          # the first of equal maxima, as torch.argmax
        fast.append(go_fast)
        if on_step:
            on_step(best)
        backlog = max(0.0, backlog + (cost + (costs["fast"] if go_fast else costs["slow"])) - bundle.frame_ms)
    return {"fast": fast, "latency_ms": backlogs[-1] if backlogs else 0.0,
            "text": greedy_decode(best, bundle.vocabulary)}


def stream(directory: str, features: str, mflops: float = 0.0, threshold: float = -1.0) -> None:
    bundle = Bundle(directory)
    mflops = mflops if mflops > 0.0 else bundle.nominal_mflops
    threshold = threshold if threshold >= 0.0 else bundle.route_threshold
    costs = bundle.costs_ms(mflops)
    utterances = read_features(features)
    total_frames = fast_frames = 0
    for index, frames in enumerate(utterances):
        if frames.shape[1] != bundle.frame_dim:
            raise BadInput(f"{features}: frames of {frames.shape[1]} features, the bundle takes {bundle.frame_dim}")
        result = stream_utterance(bundle, frames, costs, threshold)
        fast = sum(result["fast"])
        total_frames += len(result["fast"])
        fast_frames += fast
        print(f"utterance {index} frames={len(result['fast'])} fast_frames={fast} latency_ms={result['latency_ms']:.6f}")
        print(f"routes {index} {''.join('F' if f else 'S' for f in result['fast'])}")
        print(f"text {index} {result['text']}", flush=True)
    print(f"summary target={bundle.target} backend=tflite utterances={len(utterances)} frames={total_frames} "
          f"fast_frames={fast_frames} mflops={mflops:.3f} threshold={threshold:.6f}")


# ---- PCM in: the C front end ------------------------------------------------------------------------

def read_wav(path: str) -> np.ndarray:
    """int16 samples of a 16 kHz mono 16-bit PCM WAV file (the checks of amc data check)."""
    import wave

    try:
        with wave.open(path, "rb") as w:
            rate, channels, width, count = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
            pcm = w.readframes(count)
    except (wave.Error, EOFError) as error:
        raise BadInput(f"{path} is not a PCM WAV file ({error})") from None
    if rate != 16000:
        raise BadInput(f"{path} has sample rate {rate} Hz, expected 16000")
    if channels != 1:
        raise BadInput(f"{path} has {channels} channels, expected mono")
    if width != 2:
        raise BadInput(f"{path} has {8 * width}-bit samples, expected 16-bit PCM")
    if len(pcm) != 2 * count:
        raise BadInput(f"{path} is truncated: its header promises {count} samples")
    return np.frombuffer(pcm, "<i2")


class FrontEnd:
    """The C front end through ctypes: int16 PCM -> (frames, frame_dim) float32."""

    def __init__(self, library: str, tables_path: str):
        import ctypes

        self.lib = ctypes.CDLL(library)
        frame_fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t)
        self.lib.amc_frontend_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, frame_fn,
                                               ctypes.c_void_p]
        self.lib.amc_frontend_push.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        self.lib.amc_frontend_reset.argtypes = [ctypes.c_void_p]
        self.lib.amc_frontend_reset.restype = None
        self.lib.amc_frontend_state_size.restype = ctypes.c_size_t
        self.lib.amc_frontend_strerror.restype = ctypes.c_char_p
        with open(tables_path, "rb") as handle:
            tables = handle.read()
        self.tables = (ctypes.c_uint8 * len(tables)).from_buffer_copy(tables)
        self.state = (ctypes.c_uint64 * (self.lib.amc_frontend_state_size() // 8 + 1))()
        self.done: list[np.ndarray] = []
        self.callback = frame_fn(lambda ctx, frame, dim: self.done.append(np.ctypeslib.as_array(frame, (dim,)).copy()))
        rc = self.lib.amc_frontend_init(self.state, self.tables, len(tables), self.callback, None)
        if rc:
            raise BadInput(f"{tables_path}: {self.lib.amc_frontend_strerror(rc).decode()} (recompile the bundle)")

    def frames(self, pcm: np.ndarray, frame_dim: int) -> np.ndarray:
        self.lib.amc_frontend_reset(self.state)
        return self.push(pcm, frame_dim)

    def push(self, pcm: np.ndarray, frame_dim: int) -> np.ndarray:
        """The frames these samples complete (the stream goes on)."""
        pcm = np.ascontiguousarray(pcm, np.int16)
        self.done = []
        rc = self.lib.amc_frontend_push(self.state, pcm.ctypes.data, pcm.size)
        if rc:
            raise BadInput(f"front end: {self.lib.amc_frontend_strerror(rc).decode()}")
        return np.array(self.done, np.float32).reshape(-1, frame_dim)


def audio_frames(directory: str, wavs: list[str], library: str, frame_dim: int) -> list[np.ndarray]:
    recordings = [read_wav(path) for path in wavs]            # every file checked first
    front = FrontEnd(library, f"{directory}/frontend.bin")
    return [front.frames(pcm, frame_dim) for pcm in recordings]


def transcribe(directory: str, wavs: list[str], library: str, mflops: float = 0.0, threshold: float = -1.0) -> None:
    bundle = Bundle(directory)
    utterances = audio_frames(directory, wavs, library, bundle.frame_dim)
    mflops = mflops if mflops > 0.0 else bundle.nominal_mflops
    threshold = threshold if threshold >= 0.0 else bundle.route_threshold
    costs = bundle.costs_ms(mflops)
    for index, frames in enumerate(utterances):
        result = stream_utterance(bundle, frames, costs, threshold)
        print(f"utterance {index} frames={len(result['fast'])} fast_frames={sum(result['fast'])} "
              f"latency_ms={result['latency_ms']:.6f}")
        print(f"routes {index} {''.join('F' if f else 'S' for f in result['fast'])}")
        print(f"text {index} {result['text']}", flush=True)


def listen(directory: str, library: str, mflops: float = 0.0, threshold: float = -1.0) -> None:
    """Raw S16_LE mono 16 kHz PCM from stdin, transcribed as it arrives (amc-runner listen)."""
    import time

    bundle = Bundle(directory)
    front = FrontEnd(library, f"{directory}/frontend.bin")
    mflops = mflops if mflops > 0.0 else bundle.nominal_mflops
    threshold = threshold if threshold >= 0.0 else bundle.route_threshold
    ended = []

    def frames():
        while True:
            raw = sys.stdin.buffer.read(960)               # 30 ms
            if len(raw) < 960:
                ended.append(time.monotonic())
            yield from front.push(np.frombuffer(raw[:len(raw) // 2 * 2], "<i2"), bundle.frame_dim)
            if ended:
                return

    shown = [""]

    def partial(best: list[int]) -> None:
        text = greedy_decode(best, bundle.vocabulary)
        if text != shown[0]:
            shown[0] = text
            print(f"partial {text}", flush=True)

    result = stream_utterance(bundle, frames(), bundle.costs_ms(mflops), threshold, partial)
    print(f"utterance 0 frames={len(result['fast'])} fast_frames={sum(result['fast'])} "
          f"latency_ms={result['latency_ms']:.6f}")
    print(f"routes 0 {''.join('F' if f else 'S' for f in result['fast'])}")
    print(f"text 0 {result['text']}")
    board_ms = 1000.0 * (time.monotonic() - (ended[0] if ended else time.monotonic()))
    print(f"listen frames={len(result['fast'])} board_latency_ms={board_ms:.3f} "
          f"simulated_latency_ms={result['latency_ms']:.3f} mflops={mflops:.3f}", flush=True)


def features(directory: str, wavs: list[str], out: str, library: str) -> None:
    bundle = Bundle(directory, graphs=())
    utterances = audio_frames(directory, wavs, library, bundle.frame_dim)
    with open(out, "wb") as handle:
        handle.write(b"AMCF" + struct.pack("<III", 1, bundle.frame_dim, len(utterances)))
        for frames in utterances:
            handle.write(struct.pack("<I", len(frames)) + frames.astype("<f4").tobytes())
    print(f"features utterances={len(utterances)} frame_dim={bundle.frame_dim}")


# ---- one graph on recorded inputs -------------------------------------------------------------------

def run_graph(directory: str, name: str, inputs: str, outputs: str, kernels: str = "optimized") -> None:
    if name not in GRAPHS:
        raise BadInput(f"unknown graph '{name}' (fast, slow, arbitrator)")
    graph = Bundle(directory, graphs=(name,), kernels=kernels).graphs[name]
    records = read_records(inputs)
    if records and len(records[0]) != len(graph.inputs):
        raise BadInput(f"{inputs}: {len(records[0])} tensors a record, graph '{name}' takes {len(graph.inputs)}")
    produced = []
    for record in records:
        arrays = [tensor.reshape(detail["shape"]) for tensor, (_, detail) in zip(record, graph.inputs)]
        produced.append(graph(*arrays))
    write_records(outputs, produced)
    print(f"graph {name} records={len(records)} outputs={len(graph.outputs)}")


def info() -> None:
    from importlib.metadata import version

    print(f"runtime ai-edge-litert={version('ai-edge-litert')} numpy={np.__version__} "
          f"python={platform.python_version()} machine={platform.machine()}")


# ---- AMCR and AMCF files (the host's side: targets/amc_runner.py) ----------------------------------

def _read_versioned(path: str, magic: bytes) -> tuple[bytes, int, int]:
    """A file's bytes and the two counts after its magic and version 1 (16-byte header)."""
    with open(path, "rb") as handle:
        data = handle.read()
    name = magic.decode()
    if data[:4] != magic or len(data) < 16:
        raise BadInput(f"{path}: not an {name} file")
    version, first, second = struct.unpack_from("<III", data, 4)
    if version != 1:
        raise BadInput(f"{path}: {name} version {version} is not supported")
    return data, first, second


def read_records(path: str) -> list[list[np.ndarray]]:
    data, count, per_record = _read_versioned(path, b"AMCR")
    offset, records = 16, []
    for _ in range(count):
        record = []
        for _ in range(per_record):
            if offset + 8 > len(data):
                raise BadInput(f"{path}: truncated")
            code, size = struct.unpack_from("<BxxxI", data, offset)
            if code not in DTYPES:
                raise BadInput(f"{path}: unknown dtype code {code}")
            offset += 8
            if offset + size * DTYPES[code].itemsize > len(data):
                raise BadInput(f"{path}: truncated")
            record.append(np.frombuffer(data, DTYPES[code], size, offset).copy())
            offset += size * DTYPES[code].itemsize
        records.append(record)
    return records


def write_records(path: str, records: list[list[np.ndarray]]) -> None:
    per_record = len(records[0]) if records else 0
    with open(path, "wb") as out:
        out.write(b"AMCR" + struct.pack("<III", 1, len(records), per_record))
        for record in records:
            if len(record) != per_record:
                raise BadInput("every record needs the same number of tensors")
            for tensor in record:
                code = CODES[np.dtype(tensor.dtype)]
                flat = np.ascontiguousarray(tensor, dtype=DTYPES[code]).reshape(-1)
                out.write(struct.pack("<BxxxI", code, flat.size) + flat.tobytes())


def read_features(path: str) -> list[np.ndarray]:
    data, frame_dim, count = _read_versioned(path, b"AMCF")
    offset, utterances = 16, []
    for _ in range(count):
        if offset + 4 > len(data):
            raise BadInput(f"{path}: truncated")
        (frames,) = struct.unpack_from("<I", data, offset)
        offset += 4
        if offset + frames * frame_dim * 4 > len(data):
            raise BadInput(f"{path}: truncated")
        utterances.append(np.frombuffer(data, "<f4", frames * frame_dim, offset).reshape(frames, frame_dim).copy())
        offset += frames * frame_dim * 4
    return utterances


# ---- the command line -----------------------------------------------------------------------------

USAGE = "usage: tflite_board.py graph BUNDLE NAME INPUTS OUTPUTS [--kernels K] | stream BUNDLE FEATURES [--mflops X] " \
        "[--threshold P] | transcribe BUNDLE FILE.wav... --frontend-lib LIB [--mflops X] | " \
        "features BUNDLE FILE.wav... OUT.amcf --frontend-lib LIB | listen BUNDLE - --frontend-lib LIB | info"


def main(argv: list[str]) -> int:
    if not argv:
        raise BadInput(USAGE)
    command, args = argv[0], argv[1:]
    if command == "graph" and len(args) in (4, 6) and (len(args) == 4 or args[4] == "--kernels"):
        run_graph(*args[:4], *args[5:])
    elif command == "stream" and len(args) >= 2 and len(args) % 2 == 0:
        options = dict(zip(args[2::2], args[3::2]))
        unknown = set(options) - {"--mflops", "--threshold"}
        if unknown:
            raise BadInput(f"unknown option {sorted(unknown)[0]}")
        stream(args[0], args[1], float(options.get("--mflops", 0.0)), float(options.get("--threshold", -1.0)))
    elif command in ("transcribe", "features", "listen") and "--frontend-lib" in args:
        at = args.index("--frontend-lib")
        library, rest = args[at + 1] if at + 1 < len(args) else "", args[:at] + args[at + 2:]
        first_option = next((i for i, a in enumerate(rest) if a.startswith("--")), len(rest))
        positional = rest[:first_option]
        options = dict(zip(rest[len(positional)::2], rest[len(positional) + 1::2]))
        if set(options) - {"--mflops", "--threshold"} or len(positional) < {"transcribe": 2, "features": 3,
                                                                             "listen": 2}[command]:
            raise BadInput(USAGE)
        if command == "listen":
            if positional[1:] != ["-"]:
                raise BadInput(USAGE)
            listen(positional[0], library, float(options.get("--mflops", 0.0)), float(options.get("--threshold", -1.0)))
        elif command == "transcribe":
            transcribe(positional[0], positional[1:], library, float(options.get("--mflops", 0.0)),
                       float(options.get("--threshold", -1.0)))
        else:
            features(positional[0], positional[1:-1], positional[-1], library)
    elif command == "info" and not args:
        info()
    else:
        raise BadInput(USAGE)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (BadInput, OSError, ValueError, KeyError) as error:
        print(f"tflite_board: error: {error}", file=sys.stderr)
        sys.exit(2)
