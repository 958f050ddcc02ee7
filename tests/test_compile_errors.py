"""Bad input to `amc compile`: one line, a non-zero exit, nothing written."""

from __future__ import annotations

import json

import pytest
import torch

from amc.cli import main
from amc.common.errors import BudgetError, InputError, LoweringError
from amc.compiler.pipeline import compile_bundle
from tests.compile_fixtures import audio_folder, tiny_checkpoint


def _run(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr().err


@pytest.fixture
def checkpoint(tmp_path):
    return tiny_checkpoint(tmp_path / "ckpt")


def test_unknown_target(tmp_path, checkpoint, capsys):
    out = tmp_path / "out"
    code, err = _run(["compile", str(checkpoint), "--target", "pi9", "-o", str(out)], capsys)
    assert code == InputError.exit_code and "unknown target 'pi9'" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_backend_not_available_for_target(tmp_path, checkpoint, capsys):
    out = tmp_path / "out"
    code, err = _run(["compile", str(checkpoint), "--target", "cortex-m4", "--backend", "executorch",
                      "-o", str(out)], capsys)
    assert code == InputError.exit_code and "backend 'executorch' is not available for target 'cortex-m4'" in err
    assert not out.exists()


def test_empty_calibration_folder(tmp_path, checkpoint, capsys):
    calib = tmp_path / "calib"
    calib.mkdir()
    (calib / "metadata.jsonl").write_text("")
    out = tmp_path / "out"
    code, err = _run(["compile", str(checkpoint), "--target", "rpi4", "--calib", str(calib), "-o", str(out)], capsys)
    assert code == InputError.exit_code and "metadata.jsonl" in err and "empty" in err
    assert not out.exists()


def test_wrong_rate_calibration_folder(tmp_path, checkpoint, capsys):
    calib = audio_folder(tmp_path / "calib", rate=22050)
    out = tmp_path / "out"
    code, err = _run(["compile", str(checkpoint), "--target", "rpi4", "--calib", str(calib), "-o", str(out)], capsys)
    assert code == InputError.exit_code and "22050" in err and "16000" in err
    assert not out.exists()


def test_checkpoint_that_does_not_match_its_config(tmp_path, checkpoint, capsys):
    body = json.loads((checkpoint / "config.json").read_text())
    body["hidden"] = 48
    (checkpoint / "config.json").write_text(json.dumps(body))
    out = tmp_path / "out"
    code, err = _run(["compile", str(checkpoint), "--target", "rpi4", "-o", str(out)], capsys)
    assert code == InputError.exit_code and "config.json implies" in err
    assert not out.exists()


def test_unknown_variant_for_backend(tmp_path, checkpoint, capsys):
    code, err = _run(["compile", str(checkpoint), "--target", "rpi4", "--backend", "executorch",
                      "--variant", "int16x8", "-o", str(tmp_path / "out")], capsys)
    assert code == InputError.exit_code and "int16x8" in err


def test_cli_hands_the_options_to_the_api(tmp_path, checkpoint, monkeypatch, capsys):
    seen = {}

    def fake(checkpoint, **options):
        seen.update(options, checkpoint=checkpoint)
        return {"bundle": "b", "graphs": {}}

    monkeypatch.setattr("amc.compiler.pipeline.compile_bundle", fake)
    with pytest.raises(SystemExit) as exit_info:
        main(["compile", str(checkpoint), "--target", "rpi3", "--backend", "onnx", "-o", str(tmp_path / "o"), "--json"])
    assert exit_info.value.code in (0, None)
    assert seen["target"] == "rpi3" and seen["backend"] == "onnx" and seen["variant"] == "int8"
    assert json.loads(capsys.readouterr().out)["bundle"] == "b"


def test_budget_exceeded_names_the_budget_and_the_need():
    from amc.targets.backends import tflite_micro
    from amc.targets.presets import get_target

    preset = get_target("cortex-m4")
    plan = {"flash_need_bytes": 2 * preset.flash_bytes, "ram_need_bytes": 1000, "shared_arena_bytes": 900,
            "state_bytes": 100}
    with pytest.raises(BudgetError, match=r"flash budget of cortex-m4 exceeded: .* need 2097152 bytes"):
        tflite_micro.check_budget(preset, plan)
    plan = {"flash_need_bytes": 10, "ram_need_bytes": 2 * preset.ram_bytes, "shared_arena_bytes": 2 * preset.ram_bytes - 8,
            "state_bytes": 8}
    with pytest.raises(BudgetError, match="RAM budget of cortex-m4 exceeded"):
        tflite_micro.check_budget(preset, plan)


@pytest.mark.toolchain
def test_an_op_the_backend_cannot_lower_is_named_with_its_graph():
    from amc.targets.backends import executorch
    from amc.targets.step_graph import StepGraph, batch_dynamic

    class Cumulative(torch.nn.Module):
        def forward(self, features):
            return torch.cumsum(features, dim=-1)

    example = (torch.randn(1, 8),)
    gm = torch.export.export(Cumulative(), (torch.randn(2, 8),), dynamic_shapes=batch_dynamic(example)).module()
    step = StepGraph("slow", ("features",), ("logits",), example, gm)
    with pytest.raises(LoweringError, match=r"graph 'slow': operator aten\.cumsum"):
        executorch.lower(step, [(example[0].numpy(),)], {"h": (-1, 1), "c": (-1, 1)})
