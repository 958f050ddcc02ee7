"""AmNet training of the branched encoder, in three phases (and an optional one before them):

0. mixed (`mixed_epochs`): slow and fast trained together from the start on random routes, frame
   by frame, so that the two branches share one state space and a switch of route costs little;
1. slow: the full LSTM stack alone, CTC, through the fused kernel;
2. fast: the lean branch initialised from the slow one (truncated SVD for `factorized`,
   magnitude pruning for `sparse`, pruned gradually to its density) and trained alone;
3. joint: end to end, frame by frame, both branches on every frame, the arbitrator's route a
   Gumbel-softmax whose temperature is annealed until routing is essentially binary. The backlog
   is simulated along each utterance from the branch costs and the processor speed. Loss: CTC of
   the routed model (plus CTC of each branch alone, so either can run any frame), a compute-cost
   term, L_amr, the penalty for routing to the fast branch while there is no significant
   backlog, and the mean backlog itself, differentiable through the routes that built it.

Optionally (`distill_weight`, `state_weight`) the fast branch is distilled from the slow one: its
per-frame posteriors (phases 2 and 3) and, in phase 3, its next state from the routed state, so
that the branch taking over after a switch of route finds the state it expects; and phase 3 may
sample one-hot routes (`hard_routes`, straight-through), so the branches train on real switches."""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch.nn import functional as F

from amc.model.branched import BranchedEncoder, FactorizedProjection, SparseProjection
from amc.model.config import ModelConfig
from amc.model.feature_set import Batch, FeatureSet, batches
from amc.model.routing import branch_costs
from amc.model.streaming import routed_logits, stream

LATENCY_UNIT_MS = 100.0
"""The latency terms of the loss count backlog in units of this many milliseconds."""


@dataclass(frozen=True)
class TrainSettings:
    mixed_epochs: int = 0             # phase 0: both branches together on random mixed routes
    slow_epochs: int = 12
    fast_epochs: int = 4
    joint_epochs: int = 4
    batch_size: int = 32
    learning_rate: float = 2e-3
    joint_learning_rate: float = 5e-4
    mflops: float = 40.0              # simulated processor speed the arbitrator learns to keep up on
    cost_weight: float = 0.3
    amr_weight: float = 1.0           # 0 trains the ablation without L_amr
    amr_backlog_ms: float = 10.0      # "significant backlog"
    latency_weight: float = 1.0       # mean backlog (in units of LATENCY_UNIT_MS), through the routes
    eou_weight: float = 1.0           # backlog of each utterance's last frame: end-of-utterance latency
    arbitrator_learning_rate: float = 3e-3
    tau_start: float = 1.0
    tau_end: float = 0.1
    joint_utterances: int = 0         # 0: all; else a random subset per joint epoch
    distill_weight: float = 0.0       # KL from the slow branch's posteriors to the fast branch's, per frame
    state_weight: float = 0.0         # joint: the fast branch's next state pulled to the slow one's, per frame
    hard_routes: bool = False         # joint: straight-through one-hot routes instead of soft ones
    seed: int = 0

    def to_json(self) -> dict:
        return asdict(self)


def ctc(logits: torch.Tensor, batch: Batch, lengths: torch.Tensor | None = None) -> torch.Tensor:
    log_probs = F.log_softmax(logits, dim=-1).transpose(0, 1)
    return F.ctc_loss(log_probs, batch.targets, batch.lengths if lengths is None else lengths,
                      batch.target_lengths, blank=0, zero_infinity=True)


def distillation(student_logits: torch.Tensor, teacher_logits: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) of the per-frame posteriors, averaged over real frames. The fast
    branch learns the slow one's frame-level decisions, not only the transcript: the two share the
    state and the head, and the route switches between them at any frame."""
    teacher = F.log_softmax(teacher_logits.detach(), dim=-1)
    kl = (teacher.exp() * (teacher - F.log_softmax(student_logits, dim=-1))).sum(-1)
    mask = (torch.arange(kl.shape[1])[None, :] < lengths[:, None]).to(kl.dtype)
    return (kl * mask).sum() / mask.sum()


def set_feature_statistics(model: BranchedEncoder, data: FeatureSet) -> None:
    frames = torch.cat(data.features)
    model.feature_mean.copy_(frames.mean(0))
    model.feature_std.copy_(frames.std(0).clamp(min=1e-3))


def init_fast_from_slow(model: BranchedEncoder) -> None:
    """The lean branch starts as a compression of the slow one."""
    for slow, fast in zip(model.slow.projections, model.fast.projections):
        weight, bias = slow.linear.weight.detach(), slow.linear.bias.detach()
        if isinstance(fast, FactorizedProjection):
            u, s, vh = torch.linalg.svd(weight, full_matrices=False)
            rank = fast.down.weight.shape[0]
            root = s[:rank].sqrt()
            fast.up.weight.data.copy_(u[:, :rank] * root)
            fast.down.weight.data.copy_(root[:, None] * vh[:rank])
        else:
            fast.linear.weight.data.copy_(weight)
            fast.mask.fill_(1.0)
        fast.linear.bias.data.copy_(bias)


def prune_to(model: BranchedEncoder, density: float) -> None:
    """Keep the largest-magnitude fraction `density` of every sparse matrix."""
    for projection in model.fast.projections:
        if isinstance(projection, SparseProjection):
            magnitude = (projection.linear.weight * projection.mask).abs().flatten()
            keep = max(1, int(round(density * magnitude.numel())))
            threshold = magnitude.kthvalue(magnitude.numel() - keep + 1).values
            projection.mask.copy_((projection.linear.weight.abs() >= threshold).float() * projection.mask)


def train(config: ModelConfig, train_data: FeatureSet, dev_data: FeatureSet, settings: TrainSettings,
          report=None, log=None, init: BranchedEncoder | None = None) -> tuple[BranchedEncoder, dict]:
    """Returns the trained model and a history of per-epoch losses and dev CER. With `init`, the
    slow branch, head and feature statistics are taken from that model and phase 1 is skipped; its
    fast branch too when it has the same shape, and phase 2 then goes on training it; and its
    arbitrator when there is no phase 3 to train a new one."""
    from amc.model.evaluate import evaluate_model

    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    model = BranchedEncoder(config)
    set_feature_statistics(model, train_data)
    fast_loaded = False
    if init is not None:
        model.slow.load_state_dict(init.slow.state_dict())
        model.head.load_state_dict(init.head.state_dict())
        model.feature_mean.copy_(init.feature_mean)
        model.feature_std.copy_(init.feature_std)
        settings = replace(settings, slow_epochs=0)
        if _same_fast_branch(init.config, config):
            model.fast.load_state_dict(init.fast.state_dict())     # keep the trained fast branch too
            fast_loaded = True
        if settings.joint_epochs == 0:
            model.arbitrator.load_state_dict(init.arbitrator.state_dict())
    history: dict = {"settings": settings.to_json(), "epochs": []}
    log = log or (lambda message: None)
    total_epochs = settings.mixed_epochs + settings.slow_epochs + settings.fast_epochs + settings.joint_epochs
    epoch_counter = 0

    def finish_epoch(phase: str, loss: float, started: float, route: str) -> None:
        nonlocal epoch_counter
        epoch_counter += 1
        model.eval()
        dev = evaluate_model(model, dev_data, route=route, mflops=settings.mflops)
        model.train()
        entry = {"phase": phase, "epoch": epoch_counter, "loss": round(loss, 4), "dev_cer": round(dev["cer"], 2),
                 "fast_fraction": round(dev["fast_fraction"], 3), "seconds": round(time.time() - started, 1)}
        history["epochs"].append(entry)
        log(entry)
        if report:
            report("training", epoch_counter, total_epochs)

    # phase 0: both branches together, on random mixed routes; the dev CER is that of a switch
    # every other frame
    if settings.mixed_epochs:
        if not fast_loaded:
            init_fast_from_slow(model)
            fast_loaded = True
        params = list(model.slow.parameters()) + list(model.fast.parameters()) + list(model.head.parameters())
        optimizer = torch.optim.Adam(params, lr=settings.learning_rate)
        steps = settings.mixed_epochs * math.ceil(len(train_data) / settings.batch_size)
        schedule = _warm_cosine(optimizer, steps)
        for _ in range(settings.mixed_epochs):
            started = time.time()
            loss = _mixed_epoch(model, train_data, settings, optimizer, params, rng, schedule)
            finish_epoch("mixed", loss, started, "every:2")

    # phase 1: the slow branch alone
    params = list(model.slow.parameters()) + list(model.head.parameters())
    optimizer = torch.optim.Adam(params, lr=settings.learning_rate)
    schedule = _cosine(optimizer, settings.slow_epochs)
    model.train()
    for _ in range(settings.slow_epochs):
        started = time.time()
        loss = _branch_epoch(model, "slow", train_data, settings, optimizer, params, rng)
        schedule.step()
        finish_epoch("slow", loss, started, "slow")

    # phase 2: the fast branch alone, starting as a compression of the slow one
    if settings.fast_epochs and not fast_loaded:
        init_fast_from_slow(model)
    params = list(model.fast.parameters())
    optimizer = torch.optim.Adam(params, lr=settings.learning_rate / 2)
    for epoch in range(settings.fast_epochs):
        if config.fast_variant == "sparse":   # prune gradually: density falls geometrically to its target
            prune_to(model, config.fast_density ** ((epoch + 1) / settings.fast_epochs))
        started = time.time()
        loss = _branch_epoch(model, "fast", train_data, settings, optimizer, params, rng,
                             settings.distill_weight)
        finish_epoch("fast", loss, started, "fast")

    # phase 3: joint, routed frame by frame, backlog simulated
    costs = branch_costs(model)
    costs_ms = costs.ms(settings.mflops)
    history["costs_mflops"] = costs.to_json()
    params = [p for p in model.parameters() if p.requires_grad]
    arbitrator_params = list(model.arbitrator.parameters())
    others = [p for p in params if all(p is not q for q in arbitrator_params)]
    optimizer = torch.optim.Adam([{"params": others, "lr": settings.joint_learning_rate},
                                  {"params": arbitrator_params, "lr": settings.arbitrator_learning_rate}])
    for epoch in range(settings.joint_epochs):
        fraction = epoch / max(1, settings.joint_epochs - 1)
        tau = settings.tau_start * (settings.tau_end / settings.tau_start) ** fraction
        subset = train_data
        if settings.joint_utterances and settings.joint_utterances < len(train_data):
            subset = train_data.subset(rng.sample(range(len(train_data)), settings.joint_utterances))
        started, losses = time.time(), []
        for batch in batches(subset, settings.batch_size, config, rng):
            result = stream(model, batch.x, batch.lengths, "arbitrator", costs_ms, tau=tau,
                            hard=settings.hard_routes)
            frames = result.mask.sum()
            p_fast = result.p_fast * result.mask
            cost = ((1 - p_fast) * costs.slow + p_fast * costs.fast).sum() / frames / costs.slow
            idle = (result.backlog_ms.detach() < settings.amr_backlog_ms).to(p_fast.dtype)
            amr = (p_fast * idle).sum() / frames
            latency = (result.backlog_ms * result.mask).sum() / frames / LATENCY_UNIT_MS
            last = result.backlog_ms.gather(1, (batch.lengths - 1)[:, None])
            end_of_utterance = last.mean() / LATENCY_UNIT_MS
            slow_logits = model.sequence_logits("slow", batch.x)
            fast_logits = model.sequence_logits("fast", batch.x)
            loss = (ctc(result.logits, batch) + 0.5 * ctc(slow_logits, batch) + 0.5 * ctc(fast_logits, batch)
                    + 0.5 * settings.distill_weight * distillation(fast_logits, slow_logits, batch.lengths)
                    + settings.state_weight * result.state_gap.sum() / frames
                    + settings.cost_weight * cost + settings.amr_weight * amr
                    + settings.latency_weight * latency + settings.eou_weight * end_of_utterance)
            _step(optimizer, loss, params)
            losses.append(loss.item())
        finish_epoch(f"joint tau={tau:.2f}", sum(losses) / len(losses), started, "arbitrator")
    model.eval()
    return model, history


def _branch_epoch(model: BranchedEncoder, route: str, data: FeatureSet, settings: TrainSettings, optimizer,
                  params, rng, distill_weight: float = 0.0) -> float:
    """One pass of one branch alone over `data` (fused LSTM kernel); the mean loss: CTC, plus the
    distillation from the slow branch when `distill_weight` is set."""
    losses = []
    for batch in batches(data, settings.batch_size, model.config, rng):
        logits = model.sequence_logits(route, batch.x)
        loss = ctc(logits, batch)
        if distill_weight:
            with torch.no_grad():
                teacher = model.sequence_logits("slow", batch.x)
            loss = loss + distill_weight * distillation(logits, teacher, batch.lengths)
        _step(optimizer, loss, params)
        losses.append(loss.item())
    return sum(losses) / len(losses)


def random_routes(batch: int, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(batch, steps) fast shares, 0 or 1: each utterance runs slow only, fast only, or fast on each
    frame with a probability drawn from [0.2, 0.8], a third of the utterances each."""
    kind = torch.randint(0, 3, (batch, 1), generator=generator)
    mixed = 0.2 + 0.6 * torch.rand(batch, 1, generator=generator)
    share = torch.where(kind == 0, 0.0, torch.where(kind == 1, 1.0, mixed))
    return (torch.rand(batch, steps, generator=generator) < share).float()


def _mixed_epoch(model: BranchedEncoder, data: FeatureSet, settings: TrainSettings, optimizer, params, rng,
                 schedule) -> float:
    """One pass over `data` on random routes (`random_routes`), CTC of the routed output: every
    branch learns to go on from any state the other one left. The learning rate moves every step."""
    losses = []
    for batch in batches(data, settings.batch_size, model.config, rng):
        routes = random_routes(batch.x.shape[0], batch.x.shape[1])
        loss = ctc(routed_logits(model, batch.x, routes), batch)
        _step(optimizer, loss, params)
        schedule.step()
        losses.append(loss.item())
    return sum(losses) / len(losses)


def _same_fast_branch(a: ModelConfig, b: ModelConfig) -> bool:
    """Whether a fast branch of config `a` loads into a model of config `b`."""
    shape = (a.fast_variant, a.hidden, a.layers, a.fast_rank if a.fast_variant == "factorized" else None)
    return shape == (b.fast_variant, b.hidden, b.layers, b.fast_rank if b.fast_variant == "factorized" else None)


def _step(optimizer, loss, params) -> None:
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 5.0)
    optimizer.step()


def _cosine_factor(fraction: float) -> float:
    """The learning-rate factor `fraction` of the way through a schedule: cosine from 1 to 0.05."""
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * fraction))


def _cosine(optimizer, epochs: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: _cosine_factor(min(e, epochs) / max(1, epochs)))


def _warm_cosine(optimizer, steps: int, warmup: int = 200):
    """Per step: a linear warm-up over `warmup` steps, then cosine from 1 to 0.05 over `steps`."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * _cosine_factor(s / steps))


def train_checkpoint(data_dir: Path, out: Path, variant: str = "factorized", settings: TrainSettings = TrainSettings(),
                     hidden: int = 256, rank: int = 48, density: float = 0.15, backlog_scale_ms: float = 100.0,
                     cell_clip: float | None = 8.0, init: Path | None = None,
                     report=None, log=None) -> dict:
    """Train on DATA/train (dev CER on DATA/dev) and write a checkpoint directory to `out`."""
    from amc.model.checkpoint import load_checkpoint, save_checkpoint
    from amc.model.corpus.text import ALPHABET
    from amc.model.feature_set import load_features

    config = ModelConfig(vocabulary=("_",) + tuple(ALPHABET), hidden=hidden, fast_variant=variant,
                         fast_rank=rank, fast_density=density, nominal_mflops=settings.mflops,
                         backlog_scale_ms=backlog_scale_ms, cell_clip=cell_clip)
    config.validate()
    data_dir = Path(data_dir)
    train_data = load_features(data_dir / "train", config.features, report)
    dev_data = load_features(data_dir / "dev", config.features, report)
    started = time.time()
    base = None
    if init is not None:
        base = load_checkpoint(init)
        config = replace(config, hidden=base.config.hidden, layers=base.config.layers)
        if settings.fast_epochs == 0 and base.config.fast_variant == variant:
            config = replace(config, fast_rank=base.config.fast_rank, fast_density=base.config.fast_density)
        if settings.joint_epochs == 0:      # the init's arbitrator is kept, and so is what it reads
            config = replace(config, backlog_scale_ms=base.config.backlog_scale_ms,
                             route_threshold=base.config.route_threshold)
    model, history = train(config, train_data, dev_data, settings, report=report, log=log, init=base)
    history["train_seconds"] = round(time.time() - started, 1)
    history["train_utterances"] = len(train_data)
    save_checkpoint(model, out, extra=history)
    return {"checkpoint": str(out), "train_seconds": history["train_seconds"],
            "dev_cer": history["epochs"][-1]["dev_cer"] if history["epochs"] else None,
            "epochs": history["epochs"]}
