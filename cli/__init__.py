"""The `amc` command line. Only this package imports typer and rich; each command parses its
options and calls one function of the Python API."""

from __future__ import annotations

import sys

import typer

from amc.cli.output import quiet_libraries
from amc.common.errors import AmcError

app = typer.Typer(
    name="amc",
    help="amc, the amortized model compiler: branched speech encoders on small devices, "
    "updated by neural diffs.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _register() -> None:
    """The command table, in one place."""
    from amc.cli import compilecmd, data, devicecmd, diffcmd, keycmd, modelcmd, releasecmd, runtimecmd, targetscmd

    app.add_typer(data.app, name="data", help="Make and check speech data folders.")
    app.command("train")(modelcmd.train)
    app.command("eval")(modelcmd.evaluate)
    app.command("simulate")(modelcmd.simulate)
    app.command("transcribe")(modelcmd.transcribe)
    app.command("targets")(targetscmd.targets)
    app.command("compile")(compilecmd.compile)
    app.command("inspect")(compilecmd.inspect)
    app.command("test")(devicecmd.test)
    app.command("image")(devicecmd.image)
    app.add_typer(runtimecmd.runtime_app, name="runtime")
    app.command("patch")(runtimecmd.patch)
    app.command("diff")(diffcmd.diff)
    app.command("train-diff")(diffcmd.train_diff)
    app.add_typer(keycmd.key_app, name="key")
    app.command("sign")(keycmd.sign)
    app.command("release")(releasecmd.release)
    app.add_typer(diffcmd.bench_app, name="bench")


_register()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line on stderr and a non-zero exit."""
    quiet_libraries()
    try:
        app(args=argv, prog_name="amc")
    except AmcError as error:
        print(f"amc: error: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
