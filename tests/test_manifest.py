"""The weight map: every quantized tensor located in its file, and requantizing the float
constant with the frozen scales reproduces the bytes (what `amc diff` relies on)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amc.common.errors import InputError
from amc.compiler import weight_map
from amc.compiler.manifest import read_manifest
from amc.compiler.pipeline import compile_bundle
from amc.compiler.split import graph_weights
from amc.model.checkpoint import load_checkpoint
from tests.compile_fixtures import tiny_checkpoint, tiny_corpus


@pytest.mark.toolchain
def test_weight_map_requantizes_exactly_from_the_checkpoint(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "ckpt", variant="sparse")
    result = compile_bundle(checkpoint, target="host", backend="executorch", calib=tiny_corpus(tmp_path / "c"),
                            output=tmp_path / "b", verify=False)
    bundle = Path(result["bundle"])
    manifest = read_manifest(bundle)
    model = load_checkpoint(checkpoint)
    parameters = {entry["parameter"] for entry in manifest["weight_map"]}
    assert {"slow.projections.0.linear.weight", "fast.projections.0.linear.weight", "head.weight",
            "arbitrator.hidden_layer.weight"} <= parameters
    for graph in ("fast", "slow", "arbitrator"):
        floats = graph_weights(model, graph, tuple(manifest["passes"]))
        data = (bundle / manifest["graphs"][graph]["file"]).read_bytes()
        for entry in (e for e in manifest["weight_map"] if e["graph"] == graph):
            raw = weight_map.requantize(entry, floats[entry["attr"]].numpy())
            assert data[entry["offset"]:entry["offset"] + entry["length"]] == raw, entry["attr"]
    files = {m["file"]: (bundle / m["file"]).read_bytes() for m in manifest["graphs"].values()}
    assert weight_map.check(manifest["weight_map"], files) == []
    entry = manifest["weight_map"][0]
    corrupt = bytearray(files[entry["file"]])
    corrupt[entry["offset"]] ^= 0xFF
    assert weight_map.check([entry], {entry["file"]: bytes(corrupt)})


def test_manifest_schema_is_checked(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"schema": "other"}))
    with pytest.raises(InputError, match="not an amc bundle manifest"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"schema": "amc-bundle", "schema_version": 99}))
    with pytest.raises(InputError, match="schema_version 99"):
        read_manifest(tmp_path)
