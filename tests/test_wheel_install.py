"""amc installed from its wheel (`pip install .`, not editable) into a fresh virtual environment
finds its own files (the C runtime, amc-runner, boot units, the reference model) as package data,
and its compile, runtime build, on-target test and image commands work from outside the tree.

The fresh environment sees the dependencies (torch, executorch, ...) of the suite's environment
through a .pth line; amc itself comes only from the wheel."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from amc.patch.blob import public_key
from tests.compile_fixtures import tiny_checkpoint, tiny_corpus

REPO = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.toolchain, pytest.mark.cross]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("wheel")
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "suite-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    built = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", str(REPO)],
                           capture_output=True, text=True, cwd=root, timeout=900)
    assert built.returncode == 0, built.stderr[-3000:]
    work = root / "work"                     # outside the source tree: nothing found through it
    work.mkdir()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    environment |= {"AMC_BUILD_DIR": str(root / "amc-build"),
                    "AMC_DEVICE_CACHE": str(REPO / "build" / "cache"),     # the aarch64 wheels `make setup` fetched
                    "PATH": f"{env_dir / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    return {"root": root, "python": python, "amc": env_dir / "bin" / "amc", "work": work, "env": environment}


def _amc(installed: dict, *args: str, timeout: float = 1200) -> dict:
    done = subprocess.run([str(installed["amc"]), *args, "--json"], capture_output=True, text=True,
                          cwd=installed["work"], env=installed["env"], timeout=timeout)
    assert done.returncode == 0, (args, done.stderr[-3000:])
    return json.loads(done.stdout)


def test_amc_comes_from_the_wheel_with_its_device_files(installed):
    probe = ("import amc.cli, amc.common.paths as p, amc.model.checkpoint as c; "
             "print(amc.cli.__file__); print(p.device_sources('runtime')); print(p.is_source_checkout()); "
             "print(c.REFERENCE)")
    lines = subprocess.run([installed["python"], "-c", probe], capture_output=True, text=True, check=True,
                           cwd=installed["work"], env=installed["env"]).stdout.split("\n")
    site = str(installed["root"] / "venv")
    assert lines[0].startswith(site) and lines[1].startswith(site) and lines[2] == "False"
    assert (Path(lines[1]) / "CMakeLists.txt").is_file() and (Path(lines[1]) / "include" / "amc_patch.h").is_file()
    assert (Path(lines[3]) / "model.safetensors").is_file()
    assert not str(REPO) in "".join(lines)


def test_runtime_build_compile_test_and_image_from_the_wheel(installed):
    work = installed["work"]
    built = _amc(installed, "runtime", "build", "--target", "host")
    assert built["cli"] and built["text_bytes"] > 0, built
    assert built["library"].startswith(str(installed["root"] / "amc-build"))
    checkpoint, corpus = tiny_checkpoint(work / "ckpt"), tiny_corpus(work / "corpus")
    bundle = work / "rpi4-executorch"
    compiled = _amc(installed, "compile", str(checkpoint), "--target", "rpi4", "--calib", str(corpus),
                    "-o", str(bundle))
    assert compiled["verification"]["accuracy"]["utterances"] == 2 and (bundle / "manifest.json").is_file()
    tested = _amc(installed, "test", "--target", "rpi4", "--bundle", str(bundle), "--data", str(corpus / "test"),
                  "--utterances", "1", "--records", "8")
    assert tested["transcripts_equal"] and tested["patched_equal"] is True, tested
    release = work / "release.pub"                     # the public half of a release key, 32 raw bytes
    release.write_bytes(public_key(hashlib.sha256(b"wheel test release key").digest()))
    image = _amc(installed, "image", "--target", "rpi4", "--bundle", str(bundle), "-o", str(work / "image"),
                 "--key", str(release))
    assert (work / "image" / "lib" / "systemd" / "system" / "amc-patch.service").is_file(), image
    assert [p.read_bytes() for p in (work / "image" / "etc" / "amc" / "keys").iterdir()] == [release.read_bytes()]
    assert image["development_key"] is False
    assert any((work / "image").rglob("amc-patch")) and any((work / "image").rglob("amc-runner"))
