"""The backend registry: one entry a backend, the only place that knows their names."""

from __future__ import annotations

import pytest

from amc.common.errors import InputError
from amc.targets.backends import BACKENDS, backend_of_file, get_backend
from amc.targets.presets import PRESETS


def test_every_preset_names_registered_backends():
    for preset in PRESETS.values():
        assert preset.backends and set(preset.backends) <= set(BACKENDS), preset.name


def test_each_backend_has_its_own_extension_and_a_default_variant():
    extensions = [b.extension for b in BACKENDS.values()]
    assert len(set(extensions)) == len(extensions)
    for backend in BACKENDS.values():
        assert backend.variants[0] == "int8"
        assert bool(backend.native_runtime) != bool(backend.no_native_runtime), backend.name
        for function in ("check_toolchain", "lower", "open_runner", "inspect_file"):
            assert callable(getattr(backend.module, function)), (backend.name, function)


def test_graph_files_find_their_backend(tmp_path):
    assert backend_of_file(tmp_path / "slow.tflite").name == "tflite"
    assert backend_of_file(tmp_path / "slow.pte").name == "executorch"
    with pytest.raises(InputError, match=r"slow\.bin: not a bundle directory or a \.pte/\.tflite/\.onnx file"):
        backend_of_file(tmp_path / "slow.bin")


def test_unknown_backend_names_the_choices():
    with pytest.raises(InputError, match="unknown backend 'tvm': use one of executorch, tflite, onnx"):
        get_backend("tvm")


def test_micro_runs_only_tflite_graphs(tmp_path):
    with pytest.raises(InputError, match="TFLite Micro runs .tflite graphs"):
        get_backend("executorch").open_runner(tmp_path / "slow.pte", {}, micro=True)
