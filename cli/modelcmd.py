"""`amc train`, `amc eval`, `amc simulate`: the model half."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from amc.cli.output import print_json, progress_bar, stderr

Model = typer.Argument(None, help="Checkpoint directory or compiled bundle (default: the shipped reference model).",
                       exists=True, file_okay=False)
Data = typer.Option(..., "--data", help="Audio folder (WAV 16 kHz mono + metadata.jsonl).", exists=True,
                    file_okay=False)
Route = typer.Option("arbitrator", "--route", help="arbitrator, slow, fast, or every:K (fast on every K-th "
                                                    "frame, slow on the others: what a switch costs).")
Json = typer.Option(False, "--json", help="Print the result as one JSON object.")


def train(
    data: Path = typer.Option(..., "--data", exists=True, file_okay=False,
                              help="Corpus folder with train/ and dev/ audio folders (amc data synth)."),
    out: Path = typer.Option(..., "-o", "--out", help="Checkpoint directory to write."),
    variant: str = typer.Option("factorized", help="Fast branch: factorized (W ~ U V) or sparse."),
    hidden: int = typer.Option(256, help="LSTM state width."),
    rank: int = typer.Option(48, help="Rank of the factorized fast branch."),
    density: float = typer.Option(0.15, help="Density of the sparse fast branch."),
    mixed_epochs: int = typer.Option(0, help="Epochs of both branches trained together first, on random "
                                             "mixed routes, so that they share one state space."),
    slow_epochs: int = typer.Option(12), fast_epochs: int = typer.Option(4), joint_epochs: int = typer.Option(4),
    joint_utterances: int = typer.Option(0, help="Utterances per joint epoch (0: all)."),
    batch_size: int = typer.Option(32, help="Utterances per batch."),
    learning_rate: float = typer.Option(2e-3, help="Peak learning rate of the mixed, slow and fast phases "
                                                   "(the fast phase takes half of it)."),
    mflops: float = typer.Option(40.0, help="Simulated processor speed (MFLOP/s) for the backlog."),
    amr_weight: float = typer.Option(1.0, help="Weight of L_amr; 0 trains the ablation without it."),
    cost_weight: float = typer.Option(0.3, help="Weight of the compute-cost term."),
    latency_weight: float = typer.Option(1.0, help="Weight of the mean-backlog term."),
    eou_weight: float = typer.Option(1.0, help="Weight of the end-of-utterance backlog term."),
    distill: float = typer.Option(0.0, help="Weight of the frame-level distillation of the fast branch from the "
                                            "slow one (fast phase, and half of it in the joint phase)."),
    state_distill: float = typer.Option(0.0, help="Joint phase: weight of the gap between the fast branch's next "
                                                  "state and the slow one's from the same state, every frame, "
                                                  "so that switching routes costs little."),
    hard_routes: bool = typer.Option(False, help="Joint phase: one-hot routes forward, soft backward (straight-"
                                                 "through Gumbel), so the branches train on real switches."),
    backlog_scale_ms: float = typer.Option(100.0, help="The arbitrator sees backlog_ms / this."),
    cell_clip: float = typer.Option(8.0, help="Clamp the LSTM cell state to +-this every step (0: no clip); "
                                              "a bounded cell state is what lets int8 keep it."),
    seed: int = typer.Option(0),
    init: Optional[Path] = typer.Option(None, exists=True, file_okay=False,
                                        help="Take the slow branch from this checkpoint and skip its training; "
                                             "its fast branch too when variant and rank match (then "
                                             "--fast-epochs goes on training it), and its arbitrator "
                                             "when --joint-epochs is 0."),
    json_out: bool = Json,
) -> None:
    """Train a branched encoder end to end (slow, fast, joint with the arbitrator)."""
    from amc.model.train import TrainSettings, train_checkpoint

    settings = TrainSettings(mixed_epochs=mixed_epochs, slow_epochs=slow_epochs, fast_epochs=fast_epochs,
                             joint_epochs=joint_epochs, joint_utterances=joint_utterances, batch_size=batch_size,
                             learning_rate=learning_rate, mflops=mflops, amr_weight=amr_weight,
                             cost_weight=cost_weight, latency_weight=latency_weight, eou_weight=eou_weight,
                             distill_weight=distill, state_weight=state_distill,
                             hard_routes=hard_routes, seed=seed)
    with progress_bar(not json_out) as report:
        result = train_checkpoint(data, out, variant, settings, hidden=hidden, rank=rank, density=density,
                                  backlog_scale_ms=backlog_scale_ms, cell_clip=cell_clip or None, init=init,
                                  report=report, log=lambda entry: stderr.print(entry))
    print_json(result) if json_out else stderr.print(f"wrote {result['checkpoint']} (dev CER {result['dev_cer']}%)")


def evaluate(model: Optional[Path] = Model, data: Path = Data, route: str = Route,
             mflops: Optional[float] = typer.Option(None, help="Processor speed for the backlog (default: the model's)."),
             json_out: bool = Json) -> None:
    """Character and word error rate, fast-branch fraction and MFLOPs per frame, streaming."""
    from amc.compiler.scoring import evaluate_path

    with progress_bar(not json_out) as report:
        result = evaluate_path(model, data, route, mflops, report=report)
    if json_out:
        print_json(result)
        return
    typer.echo(f"CER {result['cer']:.2f}%  WER {result['wer']:.2f}%  fast {100 * result['fast_fraction']:.1f}% of "
               f"{result['frames']} frames  {result['mflops_per_frame']:.3f} MFLOPs/frame  ({result['route']})")


def transcribe(model: Path = typer.Argument(..., exists=True, file_okay=False,
                                            help="Checkpoint directory or compiled bundle."),
               files: list[Path] = typer.Argument(..., help="WAV files: 16 kHz, mono, 16-bit PCM."),
               route: str = Route,
               mflops: Optional[float] = typer.Option(None, help="Processor speed for the backlog (default: the model's)."),
               json_out: bool = Json) -> None:
    """Speech to text: one line per WAV file, with its fast-branch share and end-of-utterance latency."""
    from amc.compiler.scoring import transcribe_path

    with progress_bar(not json_out) as report:
        result = transcribe_path(model, files, route, mflops, report=report)
    if json_out:
        print_json(result)
        return
    for entry in result["results"]:
        typer.echo(f"{entry['file']}: {entry['text']}  (fast {100 * entry['fast_fraction']:.0f}%, "
                   f"end of utterance {entry['latency_ms']:.1f} ms)")


def simulate(model: Optional[Path] = Model, data: Path = Data,
             mflops: float = typer.Option(..., "--mflops", help="Simulated processor speed, MFLOP/s."),
             route: str = Route, plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG timeline."),
             json_out: bool = Json) -> None:
    """Real-time streaming on a processor of MFLOPS: end-of-utterance latency and real-time factor."""
    from amc.compiler.scoring import simulate_path

    with progress_bar(not json_out) as report:
        result = simulate_path(model, data, mflops, route, plot, report=report)
    if json_out:
        print_json(result)
        return
    latency = result["latency_ms"]
    typer.echo(f"end-of-utterance latency p50 {latency['p50']:.1f} ms  p90 {latency['p90']:.1f} ms  "
               f"max {latency['max']:.1f} ms  real-time factor {result['realtime_factor']:.2f}  "
               f"fast {100 * result['fast_fraction']:.1f}%  ({result['route']} at {mflops:g} MFLOP/s)")
