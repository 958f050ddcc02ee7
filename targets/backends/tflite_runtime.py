"""tflite-runtime, the interpreter many deployed boards still carry. It needs numpy<2, so it
cannot live in the amc venv (ExecuTorch needs numpy>=2): it is checked in a small venv of its
own, named by AMC_TFLITE_RUNTIME_PYTHON (a python with tflite_runtime installed) or found at
build/tflite-runtime-venv. Where neither exists the check is reported as not run."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

_SCRIPT = r"""
import json, sys
import numpy as np
from tflite_runtime.interpreter import Interpreter
job = json.load(open(sys.argv[1]))
out = {}
for graph, spec in job.items():
    it = Interpreter(model_path=spec["path"])
    runner = it.get_signature_runner("serving_default")
    results = []
    for sample in spec["samples"]:
        args = {f"args_{i}": np.array(a, dtype=spec["dtypes"][i]) for i, a in enumerate(sample)}
        res = runner(**args)
        results.append([res[f"output_{i}"].tolist() for i in range(spec["outputs"])])
    out[graph] = results
json.dump(out, open(sys.argv[2], "w"))
"""


def interpreter_python() -> Path | None:
    named = os.environ.get("AMC_TFLITE_RUNTIME_PYTHON")
    if named:
        return Path(named)
    default = Path("build/tflite-runtime-venv/bin/python")
    return default if default.exists() else None


def check_with_tflite_runtime(bundle_dir: Path, manifest: dict, samples: dict[str, list[tuple]]) -> str:
    from amc.targets.backends.tflite import TfliteRunner, lsb_distance

    python = interpreter_python()
    if python is None:
        return "not checked (no tflite-runtime venv: AMC_TFLITE_RUNTIME_PYTHON or build/tflite-runtime-venv)"
    job, expected = {}, {}
    for graph, inputs in samples.items():
        spec = manifest["graphs"][graph]
        lite = TfliteRunner(bundle_dir / spec["file"], spec)
        quantized = [lite.quantize_inputs(arrays) for arrays in inputs[:8]]
        job[graph] = {"path": str((bundle_dir / spec["file"]).resolve()), "outputs": len(spec["outputs"]),
                      "dtypes": [str(q.dtype) for q in quantized[0]],
                      "samples": [[q.tolist() for q in sample] for sample in quantized]}
        expected[graph] = [lite.raw(*sample) for sample in quantized]
    with tempfile.TemporaryDirectory() as scratch:
        job_path, out_path = Path(scratch) / "job.json", Path(scratch) / "out.json"
        job_path.write_text(json.dumps(job))
        done = subprocess.run([str(python), "-c", _SCRIPT, str(job_path), str(out_path)],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            return f"failed to run ({done.stderr.strip().splitlines()[-1][:160] if done.stderr.strip() else done.returncode})"
        got = json.loads(out_path.read_text())
    pairs = [(a, np.array(b, dtype=a.dtype)) for graph in expected
             for frame_a, frame_b in zip(expected[graph], got[graph]) for a, b in zip(frame_a, frame_b)]
    differing = sum(int(not np.array_equal(a, b)) for a, b in pairs)
    frames = sum(len(v) for v in expected.values())
    if differing == 0:
        return f"runs the bundle; outputs identical to ai-edge-litert on {frames} frames"
    return (f"runs the bundle; {differing} outputs differ from ai-edge-litert over {frames} frames, "
            f"by at most {max(lsb_distance(a, b) for a, b in pairs)} LSB")
