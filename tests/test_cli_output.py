"""stdout carries only the --json result: library chatter, Python or native, goes to stderr."""

from __future__ import annotations

import os

from amc.cli.output import print_json, stdout_to_stderr


def test_library_output_goes_to_stderr(capfd):
    with stdout_to_stderr():
        print("converter progress")
        os.write(1, b"native progress\n")
    print_json({"bundle": "out"})
    captured = capfd.readouterr()
    assert captured.out == '{\n  "bundle": "out"\n}\n'
    assert "converter progress" in captured.err and "native progress" in captured.err
