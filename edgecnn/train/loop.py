"""A plain supervised / distillation loop.

The same `fit` trains a reference model (cross-entropy) and distills a converted student (Hinton KD:
KL at temperature T weighted alpha, plus (1 - alpha) cross-entropy), optionally matching each
swapped layer's output to the teacher's original layer for the first steps (Network Decoupling's
data-driven mode, He et al. 2017's reconstruction). Under `torchrun` it runs DistributedDataParallel
with no code change: gloo on CPU, nccl on CUDA.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgecnn.errors import BadArgumentError

log = logging.getLogger(__name__)


@dataclass
class TrainOptions:
    epochs: int = 3
    batch_size: int = 64
    lr: float = 0.05
    optimizer: str = "sgd"  # sgd (momentum 0.9, nesterov) or adam
    weight_decay: float = 5e-4
    patience: int | None = None  # early stop after this many epochs without a better val top-1
    seed: int = 0
    checkpoint: Path | None = None  # written atomically after every epoch
    resume: bool = False
    max_steps: int | None = None  # per epoch; for smoke tests
    # distillation
    temperature: float = 4.0
    alpha: float = 0.9
    feature_steps: int = 0  # steps of per-layer feature reconstruction at the start
    feature_weight: float = 1.0
    eval_every: int | None = None  # steps between val evaluations recorded in `curve`
    device: str = "cpu"

    def validate(self) -> TrainOptions:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise BadArgumentError("--epochs, --batch-size and --lr must be positive")
        if self.optimizer not in ("sgd", "adam"):
            from edgecnn.errors import UnknownNameError

            raise UnknownNameError("optimizer", self.optimizer, ("sgd", "adam"))
        if not 0 <= self.alpha <= 1 or self.temperature <= 0:
            raise BadArgumentError("--alpha must be in [0, 1] and --temperature positive")
        return self


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    train_top1: float
    val_top1: float | None
    lr: float
    seconds: float


@dataclass
class TrainResult:
    model: object
    history: list[EpochLog] = field(default_factory=list)
    best_val_top1: float | None = None
    best_epoch: int | None = None
    stopped_early: bool = False
    initial_val_top1: float | None = None  # before any step: how good the initialisation is
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, val top-1) every eval_every

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "model"}
        return d


def _distributed():
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return None
    if not dist.is_initialized():
        import torch

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist


def _loader(dataset, batch_size: int, *, shuffle: bool, seed: int, dist=None):
    import torch
    from torch.utils.data import DataLoader, DistributedSampler

    sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed) if dist else None
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        generator=gen,
        drop_last=shuffle,
    )


def evaluate_top1(model, dataset, *, batch_size: int = 256, device: str = "cpu") -> float:
    """Top-1 (percent) of a torch model over a dataset, in eval mode."""
    import torch

    was_training = model.training
    model.eval()
    correct = total = 0
    with torch.inference_mode():
        for x, y in _loader(dataset, batch_size, shuffle=False, seed=0):
            out = model(x.to(device))
            out = out["out"] if isinstance(out, dict) else out
            correct += int((out.argmax(1).cpu() == y).sum())
            total += len(y)
    model.train(was_training)
    return 100.0 * correct / max(total, 1)


class _Features:
    """Forward hooks capturing outputs of the named layers (student swaps vs teacher originals)."""

    def __init__(self, model, names):
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise BadArgumentError(f"layer '{missing[0]}' not found for feature reconstruction")
        self.outputs: dict = {}
        self.handles = [modules[n].register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name):
        def hook(module, args, out):
            self.outputs[name] = out

        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def _save_checkpoint(path: Path, state: dict) -> None:
    import torch

    from edgecnn.artifacts import atomic_output

    with atomic_output(path, force=True) as tmp:
        torch.save(state, tmp)


def _load_checkpoint(path: Path) -> dict:
    import torch

    from edgecnn.errors import WeightsError

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or foreign file
        raise WeightsError(f"cannot resume from {path}: {str(e).splitlines()[0]}") from None


def fit(
    model,
    train_set,
    val_set=None,
    options: TrainOptions | None = None,
    *,
    teacher=None,
    feature_layers: list[str] | None = None,
    on_step: Callable[[int, int, int, float], None] | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> TrainResult:
    """Train `model` in place; returns it with the best validation weights restored.

    teacher: a model with the same class count for knowledge distillation.
    feature_layers: module names present in both student and teacher whose outputs are matched
    (MSE normalised by the teacher's energy) during the first `feature_steps` steps.
    on_step(epoch, step, steps, loss) and on_epoch(log) report progress (the CLI draws bars).
    """
    import copy

    import torch
    import torch.nn.functional as F

    opts = (options or TrainOptions()).validate()
    torch.manual_seed(opts.seed)
    dist = _distributed()
    rank = dist.get_rank() if dist else 0
    device = opts.device
    model.to(device)
    if teacher is not None:
        teacher.to(device).eval()
        n_s, n_t = _num_classes(model, train_set, device), _num_classes(teacher, train_set, device)
        if n_s != n_t:
            raise BadArgumentError(f"teacher has {n_t} classes and student {n_s}; they must match")
    params = [p for p in model.parameters() if p.requires_grad]
    if opts.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            params, opts.lr, momentum=0.9, nesterov=True, weight_decay=opts.weight_decay
        )
    else:
        optimizer = torch.optim.AdamW(params, opts.lr, weight_decay=opts.weight_decay)
    loader = _loader(train_set, opts.batch_size, shuffle=True, seed=opts.seed, dist=dist)
    steps = len(loader) if opts.max_steps is None else min(len(loader), opts.max_steps)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=opts.lr, total_steps=max(1, steps * opts.epochs), pct_start=0.15
    )
    result = TrainResult(model)
    start_epoch, best_state = 0, None
    if opts.resume and opts.checkpoint and Path(opts.checkpoint).is_file():
        state = _load_checkpoint(Path(opts.checkpoint))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"]) + 1
        if state["scheduler"].get("total_steps") == scheduler.total_steps:
            scheduler.load_state_dict(state["scheduler"])
        else:  # resumed with another --epochs: same one-cycle shape over the new length
            scheduler.last_epoch = start_epoch * steps
        result.history = [EpochLog(**h) for h in state["history"]]
        result.best_val_top1, result.best_epoch = state.get("best_val_top1"), state.get("best_epoch")
        result.initial_val_top1 = state.get("initial_val_top1")
        result.curve = [tuple(c) for c in state.get("curve", [])]
        best_state = state.get("best_model")
        log.info("resumed from %s at epoch %d", opts.checkpoint, start_epoch + 1)
    elif val_set is not None:
        result.initial_val_top1 = evaluate_top1(model, val_set, device=device)
        result.curve.append((0, result.initial_val_top1))

    net = torch.nn.parallel.DistributedDataParallel(model) if dist else model
    s_feats = t_feats = None
    if feature_layers and teacher is not None and opts.feature_steps > 0:
        s_feats, t_feats = _Features(model, feature_layers), _Features(teacher, feature_layers)
    global_step, since_best = start_epoch * steps, 0
    for epoch in range(start_epoch, opts.epochs):
        if dist:
            loader.sampler.set_epoch(epoch)
        net.train()
        t0, total_loss, correct, seen = time.perf_counter(), 0.0, 0, 0
        for step, (x, y) in enumerate(loader):
            if step >= steps:
                break
            x, y = x.to(device), y.to(device)
            out = net(x)
            out = out["out"] if isinstance(out, dict) else out
            if teacher is None:
                loss = F.cross_entropy(out, y)
            else:
                with torch.no_grad():
                    t_out = teacher(x)
                    t_out = t_out["out"] if isinstance(t_out, dict) else t_out
                T = opts.temperature
                kd = F.kl_div(
                    F.log_softmax(out / T, 1),
                    F.log_softmax(t_out / T, 1),
                    reduction="batchmean",
                    log_target=True,
                )
                loss = opts.alpha * kd * T * T + (1 - opts.alpha) * F.cross_entropy(out, y)
                if s_feats is not None and global_step < opts.feature_steps:
                    rec = sum(
                        F.mse_loss(s_feats.outputs[n], t_feats.outputs[n].detach())
                        / t_feats.outputs[n].detach().pow(2).mean().clamp_min(1e-8)
                        for n in feature_layers
                    ) / len(feature_layers)
                    loss = loss + opts.feature_weight * rec
            if not math.isfinite(loss.item()):
                raise BadArgumentError(
                    f"training diverged (loss {loss.item()}) at epoch {epoch + 1}; lower --lr"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            global_step += 1
            if opts.eval_every and val_set is not None and global_step % opts.eval_every == 0:
                result.curve.append((global_step, evaluate_top1(model, val_set, device=device)))
                net.train()
            total_loss += loss.item() * len(y)
            correct += int((out.argmax(1) == y).sum())
            seen += len(y)
            if on_step and rank == 0:
                on_step(epoch, step + 1, steps, loss.item())
        val = evaluate_top1(model, val_set, device=device) if val_set is not None else None
        entry = EpochLog(
            epoch + 1,
            total_loss / max(seen, 1),
            100.0 * correct / max(seen, 1),
            val,
            scheduler.get_last_lr()[0],
            time.perf_counter() - t0,
        )
        result.history.append(entry)
        if val is not None and (result.best_val_top1 is None or val > result.best_val_top1):
            result.best_val_top1, result.best_epoch, since_best = val, epoch + 1, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            since_best += 1
        if on_epoch and rank == 0:
            on_epoch(entry)
        if opts.checkpoint and rank == 0:
            _save_checkpoint(
                Path(opts.checkpoint),
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch,
                    "history": [asdict(h) for h in result.history],
                    "best_val_top1": result.best_val_top1,
                    "best_epoch": result.best_epoch,
                    "initial_val_top1": result.initial_val_top1,
                    "curve": [list(c) for c in result.curve],
                    "best_model": best_state,
                },
            )
        if opts.patience is not None and since_best >= opts.patience:
            result.stopped_early = True
            log.info("early stop after epoch %d: no better val top-1 for %d epochs", epoch + 1, since_best)
            break
    if s_feats is not None:
        s_feats.remove()
        t_feats.remove()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return result


def _num_classes(model, dataset, device) -> int:
    import torch

    x, _ = dataset[0]
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(torch.as_tensor(x)[None].to(device))
    model.train(was)
    out = out["out"] if isinstance(out, dict) else out
    return out.shape[1]
