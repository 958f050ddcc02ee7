"""The runtime's error codes are written once, as AMC_ERROR_LIST in
device/runtime/include/amc_patch.h: the C enum and amc_strerror() are made from it. The places
that repeat the codes are held to it here: the amc-patch exit statuses the Python side names
(RUNTIME_ERRORS in runtime/apply.py) and the list in docs/patch-format.md. The files are read
from this checkout by path."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEADER = REPO / "device" / "runtime" / "include" / "amc_patch.h"
CLI = REPO / "device" / "runtime" / "cli" / "amc_patch_cli.c"
APPLY = REPO / "runtime" / "apply.py"
FORMAT_DOC = REPO / "docs" / "patch-format.md"

# the public ABI as shipped: codes may be appended, never renumbered or renamed
SHIPPED = ("AMC_OK", "AMC_E_ARG", "AMC_E_FORMAT", "AMC_E_BOUNDS", "AMC_E_TRUNCATED",
           "AMC_E_DIGEST", "AMC_E_SIGNATURE", "AMC_E_BASE", "AMC_E_VERSION", "AMC_E_NOMEM",
           "AMC_E_IO", "AMC_E_RESULT", "AMC_E_BUSY", "AMC_E_NOROLLBACK", "AMC_E_STATE")


def c_errors() -> list[tuple[str, int, str]]:
    """(name, code, text) of each AMC_ERROR_LIST entry, in order."""
    text = HEADER.read_text()
    start = text.index("#define AMC_ERROR_LIST(X)")
    lines = []
    for line in text[start:].splitlines():
        lines.append(line)
        if not line.rstrip().endswith("\\"):
            break
    body = " ".join(line.rstrip().rstrip("\\") for line in lines)
    body = re.sub(r"/\*.*?\*/", " ", body)
    return [(name, int(code), message) for name, code, message in
            re.findall(r'X\(\s*(AMC_\w+)\s*,\s*(\d+)\s*,\s*"([^"]*)"\s*\)', body)]


def python_exit_statuses() -> dict[int, str]:
    """RUNTIME_ERRORS of runtime/apply.py, read without importing it."""
    for node in ast.parse(APPLY.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "RUNTIME_ERRORS"
                                                for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"no RUNTIME_ERRORS in {APPLY}")


def test_the_list_is_dense_and_keeps_the_shipped_codes():
    errors = c_errors()
    assert [code for _, code, _ in errors] == list(range(len(errors)))
    assert tuple(name for name, _, _ in errors[:len(SHIPPED)]) == SHIPPED
    assert all(message for _, _, message in errors)
    assert len({message for _, _, message in errors}) == len(errors)


def test_enum_and_strerror_are_made_from_the_list():
    header = HEADER.read_text()
    info = (HEADER.parent.parent / "src" / "amc_info.c").read_text()
    assert "enum amc_error { AMC_ERROR_LIST(" in header
    assert "AMC_ERROR_LIST(" in info
    # no second copy of the texts
    for _, code, message in c_errors():
        assert f'"{message}"' not in info, code


def test_python_exit_statuses_agree_code_for_code():
    statuses = python_exit_statuses()
    assert sorted(statuses) == [code for _, code, _ in c_errors() if code != 0]
    assert all(isinstance(meaning, str) and meaning for meaning in statuses.values())


def test_cli_exit_statuses_of_its_own_do_not_collide():
    codes = {code for _, code, _ in c_errors()}
    own = {int(v) for v in re.findall(r"#define EXIT_\w+ (\d+)", CLI.read_text())}
    assert own and not own & codes


def test_format_doc_lists_the_same_codes():
    doc = FORMAT_DOC.read_text()
    section = doc[doc.index("### Errors (`amc_strerror`)"):]
    section = section[:section.index("\n###")]
    listed = {("AMC_E_" + name.removeprefix("AMC_E_"), int(code))
              for name, code in re.findall(r"`(\w+)` (\d+)", section)}
    assert listed == {(name, code) for name, code, _ in c_errors() if code != 0}
