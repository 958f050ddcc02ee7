"""The small rpi4 bundles the on-target tests share: a tiny random-init branched encoder (hidden 32,
sparse fast branch) calibrated on a tiny synthesized corpus, compiled once per backend and reused
until the code that compiles it changes."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "build" / "ondevice" / "fixtures"
_COMPILER_SOURCES = ("common", "patch", "model", "calibration", "passes", "targets", "compiler")
_NOT_COMPILER = ("patch/", "compiler/image.py", "compiler/bundle_diff.py", "compiler/scoring.py",
                 "targets/amc_runner.py", "targets/device_libs.py", "targets/cross_libs.py", "targets/qemu.py",
                 "targets/board_python.py", "targets/backends/onnx.py", "model/train.py", "model/neural_diff.py",
                 "model/updates/", "model/corpus/updates.py")
"""Code that makes neither fixture bundle: the blob format, images, diffs and updates, training,
toolchains, the ONNX backend (the C runtime's tooling, the on-target harness, benchmarks and the
CLI are layers above the compiler, so outside the folders hashed). Edits there (frequent, while other
parts are developed) must not recompile a fixture (minutes on shared cores)."""
_OTHER_BACKEND = {"executorch": ("targets/tflite",), "tflite": ("targets/backends/executorch.py",)}


@functools.lru_cache(maxsize=None)
def fixture_key(backend: str) -> str:
    """Changes when the code that compiles the backend's fixture changes (computed once a session,
    so every test of the session sees the same bundle even while the tree is being edited)."""
    skip = _NOT_COMPILER + _OTHER_BACKEND[backend]
    digest = hashlib.sha256()
    for folder in _COMPILER_SOURCES:
        for path in sorted((REPO / folder).rglob("*.py")):
            name = path.relative_to(REPO).as_posix()
            if not name.startswith(skip):
                digest.update(name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def fixture_bundle(backend: str = "executorch") -> tuple[Path, Path]:
    """(bundle, audio folder) of the tiny model compiled for rpi4 with `backend`."""
    import torch

    from amc.compiler.pipeline import compile_bundle
    from amc.model.branched import BranchedEncoder
    from amc.model.checkpoint import save_checkpoint
    from amc.model.config import ModelConfig
    from amc.model.corpus.synth import synthesize_corpus

    key = fixture_key(backend)
    root = FIXTURES / (key if backend == "executorch" else f"{backend}-{key}")
    bundle, corpus = root / ("bundle-rpi4" if backend == "executorch" else f"bundle-rpi4-{backend}"), root / "corpus"
    if (bundle / "manifest.json").is_file():
        return bundle, corpus / "test"
    if not (corpus / "corpus.json").is_file():
        synthesize_corpus(corpus, seed=3, train=8, dev=0, test=4, force=True)
    config = ModelConfig(vocabulary=("_",) + tuple(" abcdefghijklmnopqrstuvwxyz'"), hidden=32, fast_rank=4,
                         fast_variant="sparse", fast_density=0.5)
    torch.manual_seed(0)
    model = BranchedEncoder(config)
    for projection in model.fast.projections:      # a real sparse branch: half of each matrix kept
        projection.mask.copy_((torch.rand_like(projection.mask) < 0.5).float())
    save_checkpoint(model.eval(), root / "checkpoint")
    compile_bundle(root / "checkpoint", target="rpi4", backend=backend, calib=corpus, output=bundle)
    return bundle, corpus / "test"
