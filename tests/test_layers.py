"""The packages form layers whose imports point one way: down. Every import of every module is
checked, imports inside functions included, so a cycle cannot hide behind a lazy import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

LAYERS = ["common", "patch", "model", "calibration", "passes", "targets", "runtime", "compiler",
          "ontarget", "bench", "cli"]
"""Bottom to top: a package may import itself and the packages before it."""

DEVICE = "device"
"""What runs on a board: it imports no host code at all."""


def modules() -> dict[str, Path]:
    """amc module name -> source file, for every package of the layout."""
    out = {}
    for package in LAYERS + [DEVICE]:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(["amc"] + parts)] = path
    return out


def imported(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported amc module) for every import statement in the file, at any depth."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[:len(module.split(".")) - node.level + is_package]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return [(line, name) for line, name in found if name == "amc" or name.startswith("amc.")]


def package_of(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def upward_edges() -> list[str]:
    edges = []
    for module, path in modules().items():
        own = package_of(module)
        for line, name in imported(module, path):
            target = package_of(name)
            if own == DEVICE:
                if target != DEVICE:
                    edges.append(f"{path.relative_to(REPO)}:{line}: device code imports host code {name}")
            elif target == DEVICE:
                continue                              # the host may read the device side's files
            elif target not in LAYERS:
                edges.append(f"{path.relative_to(REPO)}:{line}: {name} is in no layer")
            elif LAYERS.index(target) > LAYERS.index(own):
                edges.append(f"{path.relative_to(REPO)}:{line}: {own} imports {name}, a layer above it")
    return edges


def test_every_package_of_the_layout_is_a_layer():
    packages = {path.parent.name for path in REPO.glob("*/__init__.py")}
    assert packages == set(LAYERS) | {DEVICE}


def test_imports_point_down():
    assert upward_edges() == []


def test_the_check_sees_an_import_inside_a_function(tmp_path, monkeypatch):
    """The linter itself: an upward import hidden in a function body is an edge."""
    fake = tmp_path / "model"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "late.py").write_text("def f():\n    from amc.compiler.pipeline import compile_bundle\n")
    (fake / "sibling.py").write_text("from . import late\nfrom .late import f\n")
    monkeypatch.setattr(__import__(__name__), "REPO", tmp_path)
    assert upward_edges() == ["model/late.py:2: model imports amc.compiler.pipeline, a layer above it"]


@pytest.mark.parametrize("module,path,expected", [
    ("amc.model.corpus.synth", "synth.py", "amc.model.corpus.text"),
    ("amc.model.corpus", "__init__.py", "amc.model.corpus.text"),
])
def test_relative_imports_resolve_from_the_module(tmp_path, module, path, expected):
    file = tmp_path / path
    file.write_text("from .text import ALPHABET\n" if path == "synth.py" else "from .text import ALPHABET\n")
    assert imported(module, file) == [(1, expected)]
