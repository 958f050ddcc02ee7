"""Neural diff: compact updates of a deployed model, trained in the int8 domain of its bundle.

The deployed model's weight matrices live in the bundle as int8 tensors with frozen per-channel
scales. A *region* is one such tensor seen from the model: a column span of a weight parameter
(`Grid`: its scales, its int8 values, and whether the file stores it transposed). An update
changes region values only, so every weight it leaves alone stays byte-identical.

Two parametrizations, both trained with straight-through rounding so what is trained is what
ships:

* **sparse**: a diff tensor per region (in quantization steps, initialised to zero) added to the
  frozen values; after each epoch the globally smallest diff entries are pruned (soft masks whose
  temperature rises epoch by epoch, hard at the end) until the exact byte cost of the sparse
  records meets the budget. Regions with nothing left drop out, so each update picks its own set
  of weights.
* **hash**: every element of a region takes the value of a bucket chosen by the patch format's
  hash of its element index in the file (`hash_buckets`, signed); the bucket values are trained.

Budgets are bytes of the final `.amcp` blob (`blob_overhead` + records), not parameter counts.
Regions exclude the columns that read the raw features (the compiler folds the feature
normalization into them and into the bias, so changing them would move a bias too) and the
arbitrator (routing is not what an update teaches).
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from amc.common.atomic import current_umask
from amc.common.errors import InputError
from amc.common.progress import Report, quiet
from amc.model.branched import BranchedEncoder, DenseProjection, FactorizedProjection, SparseProjection
from amc.model.feature_set import FeatureSet, batches
from amc.patch.blob import DEFAULT_CHUNK, HEADER_SIZE, RECORD_HEADER_SIZE, TRAILER_SIZE, content_budget, hash_buckets

DIFF_FORMAT = "amc-neural-diff"
DIFF_VERSION = 1
METHODS = ("sparse", "hash")


# ---- regions: the int8 tensors an update may change -------------------------------------------

@dataclass
class Grid:
    """One int8 weight tensor of the bundle, in model orientation: `values` (rows, columns) are
    the deployed int8 values of `parameter[:, start:stop]`, dequantized as values * scales[row]."""

    parameter: str
    start: int
    stop: int
    scales: np.ndarray              # (rows,) float32
    values: np.ndarray              # (rows, stop - start) int, the deployed values
    quant_min: int = -127
    quant_max: int = 127
    transposed: bool = False        # the file stores values.T
    locations: tuple = ()           # (file, offset, length) of every copy in the bundle

    @property
    def key(self) -> str:
        return f"{self.parameter}[:,{self.start}:{self.stop}]"

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.values.shape)

    def file_order(self, array: np.ndarray) -> np.ndarray:
        """A (rows, columns) array flattened in the order the file stores the tensor."""
        return np.ascontiguousarray(array.T if self.transposed else array).reshape(-1)

    def from_file_order(self, flat: np.ndarray) -> np.ndarray:
        rows, columns = self.shape
        return flat.reshape(columns, rows).T if self.transposed else flat.reshape(rows, columns)

    def with_values(self, values: np.ndarray) -> "Grid":
        return replace(self, values=np.asarray(values, np.int64))


def region_spans(model: BranchedEncoder) -> dict[str, list[tuple[int, int]]]:
    """Diffable parameters and their column spans, as the compiler's graphs hold them: an LSTM
    projection reads [features or lower layer, h] (split into two tensors), the feature columns of
    layer 0 excluded; factorized `up` matrices and the head are whole."""
    config = model.config
    spans: dict[str, list[tuple[int, int]]] = {}
    for branch in ("slow", "fast"):
        stack = model.branch(branch)
        for index, projection in enumerate(stack.projections):
            in_dim = config.features.frame_dim if index == 0 else config.hidden
            prefix = f"{branch}.projections.{index}"
            first = [] if index == 0 else [(0, in_dim)]
            if isinstance(projection, FactorizedProjection):
                spans[f"{prefix}.down.weight"] = first + [(in_dim, in_dim + config.hidden)]
                spans[f"{prefix}.up.weight"] = [(0, projection.up.weight.shape[1])]
            elif isinstance(projection, (DenseProjection, SparseProjection)):
                spans[f"{prefix}.linear.weight"] = first + [(in_dim, in_dim + config.hidden)]
    spans["head.weight"] = [(0, model.head.weight.shape[1])]
    return spans


def estimate_grids(model: BranchedEncoder) -> list[Grid]:
    """Symmetric per-channel int8 over each region (scale = max|w| / 127, round half to even),
    the rule of the XNNPACK and TFLite quantizers, for when no bundle is at hand."""
    params = dict(model.named_parameters())
    grids = []
    for name, spans in region_spans(model).items():
        weight = params[name].detach().float()
        for start, stop in spans:
            block = weight[:, start:stop]
            scales = (block.abs().amax(dim=1) / 127.0).clamp(min=1e-8)
            values = torch.round(block * (1.0 / scales[:, None])).clamp(-127, 127)
            grids.append(Grid(name, start, stop, scales.numpy().astype(np.float32), values.numpy().astype(np.int64)))
    return grids


def deployed_model(model: BranchedEncoder, grids: list[Grid]) -> BranchedEncoder:
    """A copy of `model` whose region weights are the grids' dequantized int8 values: the float
    model the bundle's weights stand for (activations stay float)."""
    out = BranchedEncoder(model.config)
    out.load_state_dict(model.state_dict())
    params = dict(out.named_parameters())
    with torch.no_grad():
        for grid in grids:
            params[grid.parameter][:, grid.start:grid.stop] = torch.from_numpy(
                (grid.values * grid.scales[:, None]).astype(np.float32))
    return out.eval()


def grids_sha256(grids: list[Grid]) -> str:
    """Fingerprint of the deployed values a diff applies to."""
    import hashlib
    digest = hashlib.sha256()
    for grid in grids:
        digest.update(grid.key.encode())
        digest.update(np.asarray(grid.values, np.int8).tobytes())
    return digest.hexdigest()


# ---- the diff itself ---------------------------------------------------------------------------

@dataclass
class RegionDiff:
    key: str
    indices: np.ndarray | None = None     # sparse: flat positions in file order, increasing
    delta: np.ndarray | None = None       # sparse: int change at each position
    seed: int = 0                         # hash
    buckets: np.ndarray | None = None     # hash: int bucket values (signed hashing)


@dataclass
class NeuralDiff:
    method: str
    regions: list[RegionDiff]
    base_sha256: str                       # grids_sha256 of the values it applies to
    budget_bytes: int
    info: dict = field(default_factory=dict)

    def apply(self, grids: list[Grid]) -> list[Grid]:
        """New grids: values changed by the diff, saturating at each grid's int range."""
        by_key = {r.key: r for r in self.regions}
        out = []
        for grid in grids:
            region = by_key.get(grid.key)
            if region is None:
                out.append(grid)
                continue
            flat = grid.file_order(grid.values).astype(np.int64)
            if self.method == "sparse":
                flat[region.indices] = flat[region.indices] + region.delta
            else:
                bucket, sign = hash_buckets(flat.size, region.seed, len(region.buckets))
                flat = flat + np.asarray(region.buckets, np.int64)[bucket] * sign
            flat = np.clip(flat, grid.quant_min, grid.quant_max)
            out.append(grid.with_values(grid.from_file_order(flat)))
        return out

    def changed_elements(self) -> int:
        if self.method == "sparse":
            return int(sum(len(r.indices) for r in self.regions))
        return int(sum(len(r.buckets) for r in self.regions))

    def save(self, path: Path | str) -> Path:
        """One safetensors file: the tensors, plus the method and regions as JSON metadata."""
        from safetensors.numpy import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors, regions = {}, []
        for i, region in enumerate(self.regions):
            entry = {"key": region.key}
            if self.method == "sparse":
                tensors[f"{i}.indices"] = np.asarray(region.indices, np.int32)
                tensors[f"{i}.delta"] = np.asarray(region.delta, np.int16)
            else:
                entry["seed"] = int(region.seed)
                tensors[f"{i}.buckets"] = np.asarray(region.buckets, np.int8)
            regions.append(entry)
        metadata = {"format": DIFF_FORMAT, "version": str(DIFF_VERSION), "method": self.method,
                    "base_sha256": self.base_sha256, "budget_bytes": str(self.budget_bytes),
                    "regions": json.dumps(regions), "info": json.dumps(self.info)}
        staging = path.with_name(f".{path.name}.tmp")
        save_file(tensors, str(staging), metadata=metadata)
        staging.chmod(0o666 & ~current_umask())       # safetensors creates it private
        staging.replace(path)
        return path


def is_diff_file(path: Path | str) -> bool:
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            size = int.from_bytes(head, "little")
            if size > 1 << 24:
                return False
            return DIFF_FORMAT.encode() in f.read(size)
    except OSError:
        return False


def load_diff(path: Path | str) -> NeuralDiff:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise InputError(f"{path}: not a readable neural diff ({error})") from None
    if metadata.get("format") != DIFF_FORMAT:
        raise InputError(f"{path}: not an amc neural diff (format must be '{DIFF_FORMAT}')")
    if metadata.get("version") != str(DIFF_VERSION) or metadata.get("method") not in METHODS:
        raise InputError(f"{path}: unsupported diff version or method")
    method = metadata["method"]
    regions = []
    for i, entry in enumerate(json.loads(metadata["regions"])):
        if method == "sparse":
            regions.append(RegionDiff(entry["key"], tensors[f"{i}.indices"].astype(np.int64),
                                      tensors[f"{i}.delta"].astype(np.int64)))
        else:
            regions.append(RegionDiff(entry["key"], seed=int(entry["seed"]),
                                      buckets=tensors[f"{i}.buckets"].astype(np.int64)))
    return NeuralDiff(method, regions, metadata["base_sha256"], int(metadata["budget_bytes"]),
                      json.loads(metadata.get("info", "{}")))


# ---- byte costs of the records a diff becomes --------------------------------------------------

def blob_overhead(file_names: list[str]) -> int:
    """Header, file table and trailer of a blob targeting these files (chunk links aside)."""
    return HEADER_SIZE + sum(1 + len(n.encode()) + 4 + 64 for n in file_names) + TRAILER_SIZE


def record_budget(budget_bytes: int, file_names: list[str], chunk_size: int = DEFAULT_CHUNK) -> int:
    """Bytes of records a blob of at most `budget_bytes` can hold: what header, file table,
    trailer and the chunk links leave."""
    return content_budget(budget_bytes, chunk_size) - (blob_overhead(file_names) - TRAILER_SIZE)


def _varint_bytes(values: np.ndarray) -> np.ndarray:
    out = np.ones(values.shape, np.int64)
    for shift in (7, 14, 21, 28):
        out += values >= (1 << shift)
    return out


def sparse_record_bytes(positions: np.ndarray, elem_size: int = 1) -> int:
    """Bytes of a sparse record for sorted element positions (0 when there are none)."""
    if len(positions) == 0:
        return 0
    gaps = np.diff(np.concatenate([[-1], np.asarray(positions, np.int64)])) - 1
    return RECORD_HEADER_SIZE + 4 + int(_varint_bytes(gaps).sum()) + elem_size * len(positions)


def hash_record_bytes(buckets: int, elem_size: int = 1) -> int:
    return RECORD_HEADER_SIZE + 8 + elem_size * buckets


# ---- training --------------------------------------------------------------------------------

@dataclass(frozen=True)
class DiffSettings:
    method: str = "sparse"
    budget_bytes: int = 100_000
    epochs: int = 4
    finetune_epochs: int = 1           # sparse: epochs after the last cut that train only the survivors
    batch_size: int = 16
    learning_rate: float = 0.15        # in quantization steps (Adam)
    temperature_start: float = 1.0     # soft-mask sharpness, rising each epoch
    temperature_end: float = 30.0
    seed: int = 0
    routes: tuple[str, ...] = ("slow", "fast")
    file_names: tuple[str, ...] = ("fast.pte", "slow.pte")   # files the blob will target

    def to_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@contextlib.contextmanager
def single_thread():
    """Small recurrent models train faster on one intra-op thread than on several competing
    for shared cores (measured here: 0.25 s against 10-40 s a batch under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


def _round(x: torch.Tensor) -> torch.Tensor:
    return _RoundSTE.apply(x)


class _Forward(torch.nn.Module):
    def __init__(self, encoder: BranchedEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, route: str, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.sequence_logits(route, x)


class _DiffedModel:
    """The deployed model with region deltas (in quantization steps) swapped into its weights."""

    def __init__(self, model: BranchedEncoder, grids: list[Grid]):
        self.model = deployed_model(model, grids)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.forward = _Forward(self.model)
        self.grids = grids
        self.params = dict(self.model.named_parameters())
        self.base = {g.key: torch.from_numpy(g.values.astype(np.float32)) for g in grids}
        self.scales = {g.key: torch.from_numpy(g.scales.astype(np.float32))[:, None] for g in grids}

    def weights(self, deltas: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Parameter name -> weight with every region's delta (rows, cols) applied, saturated."""
        by_param: dict[str, list[Grid]] = {}
        for grid in self.grids:
            if grid.key in deltas:
                by_param.setdefault(grid.parameter, []).append(grid)
        out = {}
        for name, grids in by_param.items():
            weight = self.params[name]
            pieces, at = [], 0
            for grid in sorted(grids, key=lambda g: g.start):
                if grid.start > at:
                    pieces.append(weight[:, at:grid.start])
                base = self.base[grid.key]
                new = (base + deltas[grid.key]).clamp(grid.quant_min, grid.quant_max)
                pieces.append(weight[:, grid.start:grid.stop] + (new - base) * self.scales[grid.key])
                at = grid.stop
            if at < weight.shape[1]:
                pieces.append(weight[:, at:])
            out[f"encoder.{name}"] = torch.cat(pieces, dim=1)
        return out

    def logits(self, deltas: dict[str, torch.Tensor], route: str, x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(self.forward, self.weights(deltas), (route, x))


def _loss(diffed: _DiffedModel, deltas, batch, routes) -> torch.Tensor:
    from amc.model.train import ctc
    return sum(ctc(diffed.logits(deltas, route, batch.x), batch) for route in routes) / len(routes)


def copies(grid: Grid) -> int:
    """How many times the bundle holds the region (the head is in both branch graphs): each copy
    takes its own record."""
    return max(1, len(grid.locations))


def _sparse_cost(grids: list[Grid], masks: dict[str, np.ndarray]) -> int:
    """Record bytes of the sparse records for boolean masks (rows, cols) per region."""
    total = 0
    for grid in grids:
        mask = masks.get(grid.key)
        if mask is not None:
            total += copies(grid) * sparse_record_bytes(np.flatnonzero(grid.file_order(mask)))
    return total


def _prune_to_budget(grids: list[Grid], magnitude: dict[str, np.ndarray], budget: int) -> tuple[dict, float]:
    """Keep the globally largest (non-zero) entries whose sparse records fit `budget` bytes: the
    count found by bisection, ties broken by position. Returns (masks, smallest kept magnitude)."""
    keys = [g.key for g in grids]
    sizes = [magnitude[k].size for k in keys]
    flat = np.concatenate([magnitude[k].reshape(-1) for k in keys])
    ranking = np.argsort(-flat, kind="stable")
    nonzero = int((flat > 0).sum())

    def masks_for(count: int) -> tuple[dict, float]:
        chosen = np.zeros(flat.size, bool)
        chosen[ranking[:count]] = True
        parts = np.split(chosen, np.cumsum(sizes)[:-1])
        smallest = float(flat[ranking[count - 1]]) if count else float("inf")
        return {k: p.reshape(magnitude[k].shape) for k, p in zip(keys, parts)}, smallest

    lo, hi = 0, nonzero
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _sparse_cost(grids, masks_for(mid)[0]) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return masks_for(lo)


def train_diff(model: BranchedEncoder, grids: list[Grid], data: FeatureSet, settings: DiffSettings,
               report: Report = quiet, log: Callable[[dict], None] | None = None) -> NeuralDiff:
    """Train a sparse or hash diff of the deployed model (`model` with `grids`' int8 values) on
    `data` so that its blob fits `settings.budget_bytes`."""
    if settings.method not in METHODS:
        raise InputError(f"unknown diff method '{settings.method}' (use {' or '.join(METHODS)})")
    records_fit = record_budget(settings.budget_bytes, list(settings.file_names))
    if records_fit < RECORD_HEADER_SIZE + 8 + 1:
        raise InputError(f"a budget of {settings.budget_bytes} bytes cannot hold a single record "
                         f"(the blob's header, file table and trailer take "
                         f"{blob_overhead(list(settings.file_names))})")
    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    diffed = _DiffedModel(model, grids)
    log = log or (lambda entry: None)
    started = time.time()
    with single_thread():
        if settings.method == "sparse":
            diff = _train_sparse(diffed, grids, data, settings, records_fit, rng, report, log)
        else:
            diff = _train_hash(diffed, grids, data, settings, records_fit, rng, report, log)
    diff.info.update({"settings": settings.to_json(), "train_seconds": round(time.time() - started, 1),
                      "train_utterances": len(data)})
    return diff


def _train_sparse(diffed, grids, data, settings, record_budget, rng, report, log) -> NeuralDiff:
    raw = {g.key: torch.zeros(g.shape, requires_grad=True) for g in grids}
    thresholds: dict[str, float] = {}
    hard: dict[str, torch.Tensor] | None = None
    beta = 0.0
    finetune = max(1, settings.finetune_epochs)
    epochs = max(finetune + 1, settings.epochs)
    optimizer = torch.optim.Adam(list(raw.values()), lr=settings.learning_rate)

    def deltas() -> dict[str, torch.Tensor]:
        out = {}
        for key, d in raw.items():
            if hard is not None:
                out[key] = _round(d * hard[key])
            elif thresholds:
                soft = torch.sigmoid(beta * (d.abs() - thresholds["global"]))
                out[key] = _round(d * soft)
            else:
                out[key] = _round(d)
        return out

    # the full record budget, reached geometrically over the pruning epochs
    total_elements = sum(int(np.prod(g.shape)) for g in grids)
    dense_bytes = sum(sparse_record_bytes(np.arange(int(np.prod(g.shape)))) for g in grids)
    for epoch in range(epochs):
        mean_loss = _epoch(diffed, deltas, data, settings, optimizer, rng)
        magnitude = {}
        for k, d in raw.items():
            m = (d.detach() * (hard[k] if hard is not None else 1)).abs().numpy().astype(np.float64)
            magnitude[k] = np.where(m >= 0.5, m, 0.0)
        # prune: the byte target falls geometrically to the budget; the last epochs fine-tune
        prune_epochs = epochs - finetune
        entry = {"epoch": epoch + 1, "loss": round(mean_loss, 4)}
        if epoch < prune_epochs:
            fraction = (epoch + 1) / prune_epochs
            target = int(dense_bytes * (record_budget / dense_bytes) ** fraction) if record_budget < dense_bytes \
                else record_budget
            masks, threshold = _prune_to_budget(grids, magnitude, min(target, record_budget) if epoch + 1 == prune_epochs
                                                else target)
            if epoch + 1 == prune_epochs:
                hard = {k: torch.from_numpy(m.astype(np.float32)) for k, m in masks.items()}
                with torch.no_grad():
                    for k, d in raw.items():
                        d.mul_(hard[k])
            else:
                thresholds["global"] = max(0.5, threshold)
                beta = settings.temperature_start * (settings.temperature_end / settings.temperature_start) ** fraction
            entry.update({"kept": int(sum(m.sum() for m in masks.values())), "target_bytes": target,
                          "threshold_steps": round(threshold, 2), "sharpness": round(beta, 2)})
        log(entry)
        report("train sparse diff", epoch + 1, epochs)
    # the final diff: rounded deltas under the hard mask, re-pruned in case fine-tuning moved
    # entries across zero (a zero delta costs nothing and is dropped)
    final = {k: torch.round(d.detach() * hard[k]).numpy().astype(np.int64) for k, d in raw.items()}
    magnitude = {k: np.where(final[k] != 0, (d.detach() * hard[k]).abs().numpy(), 0.0).astype(np.float64)
                 for k, d in raw.items()}
    masks, _ = _prune_to_budget(grids, magnitude, record_budget)
    regions = []
    for grid in grids:
        mask = masks[grid.key] & (final[grid.key] != 0)
        positions = np.flatnonzero(grid.file_order(mask))
        if len(positions):
            regions.append(RegionDiff(grid.key, positions, grid.file_order(final[grid.key])[positions]))
    diff = NeuralDiff("sparse", regions, grids_sha256(grids), settings.budget_bytes)
    diff.info["record_bytes"] = _sparse_cost(grids, {g.key: masks[g.key] & (final[g.key] != 0) for g in grids})
    diff.info["regions_changed"] = len(regions)
    diff.info["elements_changed"] = diff.changed_elements()
    diff.info["elements_total"] = total_elements
    return diff


def _epoch(diffed, deltas, data, settings, optimizer, rng) -> float:
    """One pass over the update's training set, the diff given by `deltas()`; the mean loss."""
    losses = []
    for batch in batches(data, settings.batch_size, diffed.model.config, rng):
        loss = _loss(diffed, deltas(), batch, settings.routes)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return sum(losses) / max(1, len(losses))


def hash_allocation(grids: list[Grid], record_budget: int) -> dict[str, int]:
    """Buckets per region, in proportion to its size, so all hash records fit the budget."""
    sizes = {g.key: int(np.prod(g.shape)) for g in grids}
    n = {g.key: copies(g) for g in grids}
    available = record_budget - sum(n.values()) * hash_record_bytes(0)
    if available < sum(n.values()):
        raise InputError(f"a record budget of {record_budget} bytes cannot hold one hash bucket per region")
    total = sum(sizes[k] * n[k] for k in sizes)
    return {k: max(1, min(sizes[k], int(available * s / total))) for k, s in sizes.items()}


def _train_hash(diffed, grids, data, settings, record_budget, rng, report, log) -> NeuralDiff:
    counts = hash_allocation(grids, record_budget)
    seeds = {g.key: (settings.seed * 7919 + i * 104729 + 1) & 0xFFFFFFFF for i, g in enumerate(grids)}
    index = {}
    for grid in grids:
        bucket, sign = hash_buckets(int(np.prod(grid.shape)), seeds[grid.key], counts[grid.key])
        index[grid.key] = (torch.from_numpy(grid.from_file_order(bucket).copy()),
                           torch.from_numpy(grid.from_file_order(sign).astype(np.float32).copy()))
    buckets = {g.key: torch.zeros(counts[g.key], requires_grad=True) for g in grids}

    def deltas() -> dict[str, torch.Tensor]:
        return {k: _round(b.clamp(-127, 127))[index[k][0]] * index[k][1] for k, b in buckets.items()}

    optimizer = torch.optim.Adam(list(buckets.values()), lr=settings.learning_rate)
    for epoch in range(settings.epochs):
        mean_loss = _epoch(diffed, deltas, data, settings, optimizer, rng)
        log({"epoch": epoch + 1, "loss": round(mean_loss, 4)})
        report("train hash diff", epoch + 1, settings.epochs)
    regions = []
    for grid in grids:
        values = torch.round(buckets[grid.key].detach().clamp(-127, 127)).numpy().astype(np.int64)
        if values.any():
            regions.append(RegionDiff(grid.key, seed=seeds[grid.key], buckets=values))
    diff = NeuralDiff("hash", regions, grids_sha256(grids), settings.budget_bytes)
    by_key = {g.key: g for g in grids}
    diff.info["record_bytes"] = sum(copies(by_key[r.key]) * hash_record_bytes(len(r.buckets)) for r in regions)
    diff.info["regions_changed"] = len(regions)
    diff.info["buckets"] = diff.changed_elements()
    return diff


# ---- the references: full retraining, and keeping its largest changes ----------------------

def train_full(model: BranchedEncoder, grids: list[Grid], data: FeatureSet, epochs: int = 3,
               batch_size: int = 16, learning_rate: float = 3e-4, seed: int = 0,
               routes: tuple[str, ...] = ("slow", "fast"), report: Report = quiet,
               log: Callable[[dict], None] | None = None) -> BranchedEncoder:
    """Fine-tune every parameter of the deployed model on the update data (what a team does
    without neural diff); float result."""
    from amc.model.train import ctc

    torch.manual_seed(seed)
    rng = random.Random(seed)
    out = deployed_model(model, grids)
    out.train()
    params = [p for name, p in out.named_parameters() if not name.startswith("arbitrator.")]
    optimizer = torch.optim.Adam(params, lr=learning_rate)
    with single_thread():
        _full_epochs(out, data, epochs, batch_size, routes, params, optimizer, rng, report, log)
    return out.eval()


def _full_epochs(out, data, epochs, batch_size, routes, params, optimizer, rng, report, log) -> None:
    from amc.model.train import ctc

    for epoch in range(epochs):
        losses = []
        for batch in batches(data, batch_size, out.config, rng):
            loss = sum(ctc(out.sequence_logits(route, batch.x), batch) for route in routes) / len(routes)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            optimizer.step()
            losses.append(loss.item())
        (log or (lambda e: None))({"epoch": epoch + 1, "loss": round(sum(losses) / max(1, len(losses)), 4)})
        report("full retrain", epoch + 1, epochs)


def quantize_on(grids: list[Grid], model: BranchedEncoder) -> list[Grid]:
    """The model's region weights quantized with the grids' frozen scales."""
    params = dict(model.named_parameters())
    out = []
    for grid in grids:
        block = params[grid.parameter].detach()[:, grid.start:grid.stop].float().numpy()
        scaled = block * (np.float32(1.0) / grid.scales[:, None])
        out.append(grid.with_values(np.clip(np.rint(scaled), grid.quant_min, grid.quant_max)))
    return out


def largest_changes(grids: list[Grid], target: list[Grid], budget_bytes: int,
                    file_names: tuple[str, ...] = ("fast.pte", "slow.pte")) -> NeuralDiff:
    """The plain baseline: of all int8 changes from `grids` to `target`, keep the largest (in
    float magnitude) whose sparse records fit the budget."""
    records_fit = record_budget(budget_bytes, list(file_names))
    change = {g.key: (t.values - g.values) for g, t in zip(grids, target)}
    magnitude = {g.key: np.abs(change[g.key]) * g.scales[:, None].astype(np.float64) for g in grids}
    masks, _ = _prune_to_budget(grids, magnitude, max(0, records_fit))
    regions = []
    for grid in grids:
        mask = masks[grid.key] & (change[grid.key] != 0)
        positions = np.flatnonzero(grid.file_order(mask))
        if len(positions):
            regions.append(RegionDiff(grid.key, positions, grid.file_order(change[grid.key])[positions]))
    diff = NeuralDiff("sparse", regions, grids_sha256(grids), budget_bytes, {"baseline": "largest changes"})
    diff.info["elements_changed"] = diff.changed_elements()
    return diff
