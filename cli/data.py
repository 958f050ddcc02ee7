"""`amc data synth` and `amc data check`: make the synthetic speech corpus, validate audio folders."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from amc.cli.output import print_json, progress_bar, stderr

app = typer.Typer(no_args_is_help=True, help="Make and check speech data folders.")


@app.command()
def synth(
    output: Path = typer.Option(..., "-o", "--output", file_okay=False,
                                help="Corpus directory to write (train/, dev/, test/)."),
    seed: int = typer.Option(0, help="Seed: the same seed and counts give the same bytes."),
    train: int = typer.Option(6000, min=0, help="Training utterances."),
    dev: int = typer.Option(300, min=0, help="Development utterances (training voices)."),
    test: int = typer.Option(500, min=0, help="Test utterances (voices unheard in training)."),
    workers: Optional[int] = typer.Option(None, min=1, help="Processes (default: all cores)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output directory."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Synthesize the voice-assistant speech corpus with espeak-ng (noise, reverb, many voices)."""
    from amc.model.corpus.synth import synthesize_corpus

    with progress_bar(not json_out) as report:
        summary = synthesize_corpus(output, seed=seed, train=train, dev=dev, test=test,
                                    workers=workers, force=force, report=report)
    if json_out:
        print_json(summary)
        return
    for split, s in summary["splits"].items():
        stderr.print(f"{split:5s} {s['utterances']:6d} utterances  {s['hours']:.2f} h  "
                     f"mean {s['mean_s']:.2f} s  {s['voices']} voices")
    stderr.print(f"wrote {summary['output']} in {summary['wall_s']:.0f} s")


@app.command()
def check(
    folder: Path = typer.Argument(..., exists=True, file_okay=False,
                                  help="An audio folder, or a corpus folder holding train/dev/test."),
    json_out: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """Validate an audio folder (metadata.jsonl + 16 kHz mono 16-bit WAVs) and count it."""
    from amc.model.corpus.audio_folder import summarize_audio_folder

    summary = summarize_audio_folder(folder)
    if json_out:
        print_json(summary)
        return
    for name, s in (summary["splits"].items() if "splits" in summary else [(str(folder), summary)]):
        typer.echo(f"{name}: {s['utterances']} utterances, {s['hours']:.2f} h, "
                   f"mean {s['mean_s']:.2f} s (min {s['min_s']:.2f}, max {s['max_s']:.2f})")
