"""`amc eval`, `amc simulate`, `amc train`: exit codes, JSON keys, and what reaches the API."""

from __future__ import annotations

import json

import pytest

from amc.model.checkpoint import save_checkpoint
from tests.conftest import run_cli as run


def test_bad_checkpoint_is_one_line_and_exit_2(tmp_path, tiny_model, capsys):
    save_checkpoint(tiny_model, tmp_path / "ckpt")
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps({"architecture": "rnn-t"}))
    (tmp_path / "data").mkdir()
    code, out, err = run(["eval", str(tmp_path / "ckpt"), "--data", str(tmp_path / "data")], capsys)
    assert code == 2
    assert err.count("\n") == 1 and "unknown architecture 'rnn-t'" in err
    assert "Traceback" not in err


def test_unknown_route_is_rejected(tmp_path, tiny_model, capsys):
    save_checkpoint(tiny_model, tmp_path / "ckpt")
    (tmp_path / "data").mkdir()
    for route in ("medium", "every:0"):
        code, _, err = run(["eval", str(tmp_path / "ckpt"), "--data", str(tmp_path / "data"), "--route", route],
                           capsys)
        assert code == 2 and f"--route must be one of arbitrator, slow, fast or every:K (K >= 1), not '{route}'" in err


def test_eval_and_simulate_json(tmp_path, tiny_model, capsys, monkeypatch):
    from amc.compiler import scoring as simulate
    from tests.conftest import random_features

    save_checkpoint(tiny_model, tmp_path / "ckpt")
    (tmp_path / "data").mkdir()
    seen = {}

    def fake_load_features(path, features, report=None):
        seen["data"] = path
        return random_features(3)

    monkeypatch.setattr(simulate, "load_features", fake_load_features)
    code, out, _ = run(["eval", str(tmp_path / "ckpt"), "--data", str(tmp_path / "data"), "--json"], capsys)
    assert code == 0
    result = json.loads(out)
    assert {"cer", "wer", "fast_fraction", "mflops_per_frame"} <= set(result)
    assert str(seen["data"]) == str(tmp_path / "data")
    plot = tmp_path / "timeline.png"
    code, out, _ = run(["simulate", str(tmp_path / "ckpt"), "--data", str(tmp_path / "data"), "--mflops", "2",
                        "--route", "slow", "--plot", str(plot), "--json"], capsys)
    result = json.loads(out)
    assert code == 0
    assert set(result["latency_ms"]) >= {"p50", "p90", "max"}
    assert result["fast_fraction"] == 0.0 and result["realtime_factor"] > 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
