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
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgecnn.card import logits
from edgecnn.errors import BadArgumentError
from edgecnn.train.checkpoint import load_checkpoint, save_checkpoint
from edgecnn.train.ddp import distributed
from edgecnn.train.evaluate import evaluate_top1
from edgecnn.train.loader import check_labels, make_loader, num_classes
from edgecnn.train.losses import Features, feature_loss, kd_loss
from edgecnn.train.options import TrainOptions

log = logging.getLogger(__name__)


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
    best_epoch: int | None = None  # 0: no epoch beat the starting weights, which were kept
    stopped_early: bool = False
    initial_val_top1: float | None = None  # before any step: how good the initialisation is
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, val top-1) every eval_every

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "model"}
        return d

    @property
    def kept(self) -> str:
        """Which weights came back, for a report line."""
        return (
            "the starting weights (no epoch beat them)"
            if self.best_epoch == 0
            else f"epoch {self.best_epoch}"
        )


class _Session:
    """The state of one `fit` call: model, optimiser, schedule, hooks; one method per job."""

    def __init__(self, model, train_set, val_set, opts: TrainOptions, teacher, feature_layers):
        import torch

        self.opts, self.model, self.teacher, self.val_set = opts, model, teacher, val_set
        self.dist = distributed(opts.device)
        self.rank = self.dist.get_rank() if self.dist else 0
        self.device = opts.device
        model.to(self.device)
        if teacher is not None:
            teacher.to(self.device).eval()
            n_s, n_t = (
                num_classes(model, train_set, self.device),
                num_classes(teacher, train_set, self.device),
            )
            if n_s != n_t:
                raise BadArgumentError(f"teacher has {n_t} classes and student {n_s}; they must match")
        check_labels(model, (train_set, val_set))
        params = self._param_groups(model, opts)
        if opts.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(
                params, opts.lr, momentum=0.9, nesterov=True, weight_decay=opts.weight_decay
            )
        else:
            self.optimizer = torch.optim.AdamW(params, opts.lr, weight_decay=opts.weight_decay)
        self.loader = make_loader(
            train_set,
            opts.batch_size,
            shuffle=True,
            seed=opts.seed,
            dist=self.dist,
            workers=opts.workers,
            pin=self.device == "cuda",
        )
        # mixed precision on CUDA: bf16 needs no loss scaling; fp16 does
        self.amp_dtype = None
        if opts.amp:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        n = len(self.loader)
        if n == 0:
            raise BadArgumentError(
                f"{len(train_set)} training images are fewer than one batch of {opts.batch_size}: no "
                "step would run; give more images or a smaller --batch-size"
            )
        self.steps = n if opts.max_steps is None else min(n, opts.max_steps)
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer,
            max_lr=[g["lr"] for g in self.optimizer.param_groups],
            total_steps=max(1, self.steps * opts.epochs),
            pct_start=0.15,
        )
        self.net = torch.nn.parallel.DistributedDataParallel(model) if self.dist else model
        self.layers = (
            feature_layers if feature_layers and teacher is not None and opts.feature_steps > 0 else None
        )
        self.s_feats = Features(model, self.layers) if self.layers else None
        self.t_feats = Features(teacher, self.layers) if self.layers else None
        self.global_step = 0
        if opts.freeze_epochs and self.dist:
            raise BadArgumentError("--freeze-epochs is not supported under torchrun; leave it out there")

    def _param_groups(self, model, opts: TrainOptions) -> list[dict]:
        """One group per learning rate: the fresh head at --lr, the pretrained rest at its share."""
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not opts.head:
            return [{"params": [p for _, p in trainable], "lr": opts.lr}]
        prefixes = tuple(f"{h}." for h in opts.head)
        head = [p for n, p in trainable if n.startswith(prefixes)]
        self.backbone = [p for n, p in trainable if not n.startswith(prefixes)]
        if not head:
            raise BadArgumentError(f"no parameters under the head layer(s) {', '.join(opts.head)}")
        groups = [{"params": head, "lr": opts.lr}]
        if self.backbone:
            groups.append({"params": self.backbone, "lr": opts.lr * opts.backbone_lr_scale})
        return groups

    def freeze(self, epoch: int) -> None:
        """The backbone takes no step for the first freeze_epochs epochs (the head learns first, so a
        random head's large gradients do not wreck the pretrained features)."""
        frozen = epoch < self.opts.freeze_epochs
        for p in getattr(self, "backbone", ()):
            p.requires_grad_(not frozen)
        if self.opts.freeze_epochs and epoch in (0, self.opts.freeze_epochs):
            log.info("epoch %d: backbone %s", epoch + 1, "frozen" if frozen else "trained")

    def close(self) -> None:
        for p in getattr(self, "backbone", ()):
            p.requires_grad_(True)  # an early stop inside the frozen epochs leaves nothing frozen
        for feats in (self.s_feats, self.t_feats):
            if feats is not None:
                feats.remove()

    def loss(self, x, y):
        """(loss, student logits) for one batch: cross-entropy, or KD (+ feature reconstruction)."""
        import torch
        import torch.nn.functional as F

        out = logits(self.net(x))
        if self.teacher is None:
            return F.cross_entropy(out, y), out
        with torch.no_grad():
            t_out = logits(self.teacher(x))
        loss = kd_loss(out, t_out, y, self.opts)
        if self.s_feats is not None and self.global_step < self.opts.feature_steps:
            loss = loss + self.opts.feature_weight * feature_loss(self.s_feats, self.t_feats, self.layers)
        return loss, out

    def step(self, x, y, epoch: int, result: TrainResult):
        """One optimiser step; returns (loss value, correct predictions)."""
        import torch

        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        with torch.autocast(
            "cuda", dtype=self.amp_dtype or torch.float16, enabled=self.amp_dtype is not None
        ):
            loss, out = self.loss(x, y)
        value = loss.item()
        if not math.isfinite(value):
            from edgecnn.errors import DivergedError

            raise DivergedError(f"training diverged (loss {value}) at epoch {epoch + 1}; lower --lr")
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.scheduler.step()
        self.global_step += 1
        if self.opts.eval_every and self.val_set is not None and self.global_step % self.opts.eval_every == 0:
            result.curve.append(
                (self.global_step, evaluate_top1(self.model, self.val_set, device=self.device))
            )
            self.net.train()
        return value, int((out.argmax(1) == y).sum())

    def epoch(self, epoch: int, result: TrainResult, on_step) -> EpochLog:
        if self.dist:
            self.loader.sampler.set_epoch(epoch)
        self.freeze(epoch)
        self.net.train()
        t0, total_loss, correct, seen = time.perf_counter(), 0.0, 0, 0
        for i, batch in enumerate(self.loader):
            if i >= self.steps:
                break
            if batch is None:  # no readable image in it
                continue
            x, y = batch
            value, right = self.step(x, y, epoch, result)
            total_loss, correct, seen = total_loss + value * len(y), correct + right, seen + len(y)
            if on_step and self.rank == 0:
                on_step(epoch, i + 1, self.steps, value)
        val = (
            evaluate_top1(self.model, self.val_set, device=self.device) if self.val_set is not None else None
        )
        return EpochLog(
            epoch + 1,
            total_loss / max(seen, 1),
            100.0 * correct / max(seen, 1),
            val,
            self.scheduler.get_last_lr()[0],
            time.perf_counter() - t0,
        )

    def resume(self, result: TrainResult):
        """Restore from the checkpoint: (first epoch to run, best weights so far)."""
        from edgecnn.errors import WeightsError

        state = load_checkpoint(Path(self.opts.checkpoint))
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, RuntimeError, ValueError) as e:  # another model, class count or optimizer
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            why = lines[1] if len(lines) > 1 else (lines[0] if lines else type(e).__name__)
            raise WeightsError(
                f"cannot resume from {self.opts.checkpoint}: it is not a checkpoint of this training "
                f"({why}); remove it or train without --resume"
            ) from None
        start_epoch = int(state["epoch"]) + 1
        if state["scheduler"].get("total_steps") == self.scheduler.total_steps:
            self.scheduler.load_state_dict(state["scheduler"])
        else:  # resumed with another --epochs: same one-cycle shape over the new length
            self.scheduler.last_epoch = start_epoch * self.steps
        result.history = [EpochLog(**h) for h in state["history"]]
        result.best_val_top1, result.best_epoch = state.get("best_val_top1"), state.get("best_epoch")
        result.initial_val_top1 = state.get("initial_val_top1")
        result.curve = [tuple(c) for c in state.get("curve", [])]
        self.global_step = start_epoch * self.steps
        log.info("resumed from %s at epoch %d", self.opts.checkpoint, start_epoch + 1)
        return start_epoch, state.get("best_model")

    def checkpoint(self, epoch: int, result: TrainResult, best_state) -> None:
        save_checkpoint(
            Path(self.opts.checkpoint),
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "epoch": epoch,
                "history": [asdict(h) for h in result.history],
                "best_val_top1": result.best_val_top1,
                "best_epoch": result.best_epoch,
                "initial_val_top1": result.initial_val_top1,
                "curve": [list(c) for c in result.curve],
                "best_model": best_state,
            },
        )


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
    """Train `model` in place; returns it with the best validation weights restored (the starting
    weights when no epoch beat them: a fine-tune never hands back a worse model than it was given).

    teacher: a model with the same class count for knowledge distillation.
    feature_layers: module names present in both student and teacher whose outputs are matched
    (MSE normalised by the teacher's energy) during the first `feature_steps` steps.
    on_step(epoch, step, steps, loss) and on_epoch(log) report progress (the CLI draws bars).
    """
    import torch

    opts = (options or TrainOptions()).validate()
    torch.manual_seed(opts.seed)
    session = _Session(model, train_set, val_set, opts, teacher, feature_layers)
    result = TrainResult(model)
    (start_epoch, best_state), since_best = _start(session, model, val_set, opts, result), 0
    try:
        for epoch in range(start_epoch, opts.epochs):
            entry = session.epoch(epoch, result, on_step)
            result.history.append(entry)
            best_state, improved = _keep_best(model, entry, result, best_state)
            since_best = 0 if improved else since_best + 1
            if on_epoch and session.rank == 0:
                on_epoch(entry)
            if opts.checkpoint and session.rank == 0:
                session.checkpoint(epoch, result, best_state)
            if opts.patience is not None and since_best >= opts.patience:
                result.stopped_early = True
                log.info(
                    "early stop after epoch %d: no better val top-1 for %d epochs", epoch + 1, since_best
                )
                break
    finally:
        session.close()
    _restore_best(model, result, best_state)
    model.eval()
    return result


def _start(session, model, val_set, opts: TrainOptions, result: TrainResult):
    """(first epoch, best weights so far): resumed from the checkpoint when asked, else from the
    start, whose weights compete too: a fine-tune that only got worse hands back what it was given
    (a too-high lr can wreck a distilled student)."""
    import copy

    start_epoch, best_state = 0, None
    if opts.resume and opts.checkpoint and Path(opts.checkpoint).is_file():
        start_epoch, best_state = session.resume(result)
    elif opts.resume:
        log.warning("--resume: no checkpoint at %s; training from the start", opts.checkpoint)
    if start_epoch == 0 and val_set is not None:
        result.initial_val_top1 = evaluate_top1(model, val_set, device=opts.device)
        result.curve.append((0, result.initial_val_top1))
        result.best_val_top1, result.best_epoch = result.initial_val_top1, 0
        best_state = copy.deepcopy(model.state_dict())
    return start_epoch, best_state


def _keep_best(model, entry: EpochLog, result: TrainResult, best_state):
    """(the best validation weights so far, whether this epoch beat them). A tie keeps the later,
    longer-trained weights (a small validation set ties often: one run had kept epoch 1 of 12) but
    is no improvement, so patience still stops a plateau."""
    import copy

    val = entry.val_top1
    if val is not None and (result.best_val_top1 is None or val > result.best_val_top1):
        result.best_val_top1, result.best_epoch = val, entry.epoch
        return copy.deepcopy(model.state_dict()), True
    if val is not None and val == result.best_val_top1:
        result.best_epoch = entry.epoch
        return copy.deepcopy(model.state_dict()), False
    return best_state, False


def _restore_best(model, result: TrainResult, best_state) -> None:
    if best_state is None:
        return
    model.load_state_dict(best_state)
    if result.best_epoch == 0:
        log.warning(
            "no epoch beat the starting weights (val top-1 %.2f%%): kept them; try a lower --lr",
            result.best_val_top1,
        )
    else:
        log.info(
            "kept epoch %d: val top-1 %.2f%%, the best (the latest of any tie)",
            result.best_epoch,
            result.best_val_top1,
        )
