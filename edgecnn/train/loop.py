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

from edgecnn.card import logits
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
    device: str = "cpu"  # "cpu", "cuda" or "auto" (CUDA when there is one)
    amp: bool = False  # CUDA mixed precision: bf16 autocast where the GPU has it, else fp16 + loss scaling
    workers: int = 0  # DataLoader worker processes (0: decode in the training process)
    # fine-tuning: the fresh classifier head (module names); every other parameter is pretrained
    head: tuple[str, ...] = ()
    freeze_epochs: int = 0  # epochs that train the head alone before the backbone joins in
    backbone_lr_scale: float = 1.0  # the pretrained layers' learning rate, as a share of --lr

    def validate(self) -> TrainOptions:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise BadArgumentError("--epochs, --batch-size and --lr must be positive")
        if self.optimizer not in ("sgd", "adam"):
            from edgecnn.errors import UnknownNameError

            raise UnknownNameError("optimizer", self.optimizer, ("sgd", "adam"))
        if not 0 <= self.alpha <= 1 or self.temperature <= 0:
            raise BadArgumentError("--alpha must be in [0, 1] and --temperature positive")
        self.device = resolve_device(self.device)
        if self.amp and self.device != "cuda":
            raise BadArgumentError(
                "--amp is CUDA mixed precision: use it with --device cuda (or auto on a GPU)"
            )
        if self.workers < 0:
            raise BadArgumentError(f"--workers must be >= 0, got {self.workers}")
        if self.freeze_epochs < 0 or not 0 < self.backbone_lr_scale <= 1:
            raise BadArgumentError("--freeze-epochs must be >= 0 and --backbone-lr-scale in (0, 1]")
        if (self.freeze_epochs or self.backbone_lr_scale != 1) and not self.head:
            raise BadArgumentError(
                "--freeze-epochs and --backbone-lr-scale go with pretrained --weights (a new head to train)"
            )
        if self.freeze_epochs >= self.epochs:
            raise BadArgumentError(
                f"--freeze-epochs {self.freeze_epochs} leaves no epoch of --epochs {self.epochs} to train "
                "the backbone"
            )
        return self


DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> str:
    """ "auto" -> CUDA when torch sees a GPU, else the CPU; "cuda" without one is a one-line error."""
    if device not in DEVICES:
        from edgecnn.errors import UnknownNameError

        raise UnknownNameError("device", device, DEVICES)
    if device == "cpu":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        from edgecnn.errors import MissingBackendError

        raise MissingBackendError("--device cuda: torch sees no CUDA device here (torch.cuda.is_available())")
    return "cpu"


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


DDP_BACKENDS = {"cuda": "nccl", "cpu": "gloo"}  # device type -> the collective backend it needs


def _distributed(device: str = "cpu"):
    """The process group under torchrun (None otherwise), with the backend for where the model runs:
    nccl only for a model on CUDA (a CPU model on a GPU machine needs gloo), each rank on its own
    local GPU."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return None
    if not dist.is_initialized():
        import torch

        kind = torch.device(device).type
        if kind == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(DDP_BACKENDS.get(kind, "gloo"))
    return dist


class _Readable:
    """A dataset whose undecodable images come out as None (logged once each) instead of raising:
    one zero-byte PNG must not end a training run; the batch goes on without it."""

    def __init__(self, dataset):
        self.dataset, self.warned = dataset, set()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            return self.dataset[index]
        except OSError as e:  # PIL raises OSError subclasses for truncated/corrupt files
            if index not in self.warned:
                self.warned.add(index)
                log.warning("skipping unreadable image #%d of %s: %s", index, self.dataset.source, e)
            return None


def _collate(items):
    """The default collation of the readable items; None when none of the batch was readable."""
    from torch.utils.data import default_collate

    items = [item for item in items if item is not None]
    return default_collate(items) if items else None


def make_loader(
    dataset, batch_size: int, *, shuffle: bool, seed: int, dist=None, workers: int = 0, pin=False
):
    """A seeded DataLoader (a DistributedSampler under torchrun); shuffled loaders drop the last batch.
    Unreadable images are skipped; a batch with none readable comes out as None. workers decode in
    parallel processes; pin: page-locked batches, so copies to a GPU overlap compute."""
    import torch
    from torch.utils.data import DataLoader, DistributedSampler

    sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed) if dist else None
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(
        _Readable(dataset),
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        generator=gen,
        drop_last=shuffle,
        collate_fn=_collate,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=workers > 0,
    )


def evaluate_top1(model, dataset, *, batch_size: int = 256, device: str = "cpu") -> float:
    """Top-1 (percent) of a torch model over a dataset, in eval mode."""
    import torch

    was_training = model.training
    model.eval().to(device)
    correct = total = 0
    with torch.inference_mode():
        for batch in make_loader(dataset, batch_size, shuffle=False, seed=0):
            if batch is None:
                continue
            x, y = batch
            out = logits(model(x.to(device)))
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


def kd_loss(out, t_out, y, opts: TrainOptions):
    """Hinton KD: KL at temperature T (scaled by T^2) weighted alpha, plus (1 - alpha) cross-entropy."""
    import torch.nn.functional as F

    T = opts.temperature
    kd = F.kl_div(
        F.log_softmax(out / T, 1), F.log_softmax(t_out / T, 1), reduction="batchmean", log_target=True
    )
    return opts.alpha * kd * T * T + (1 - opts.alpha) * F.cross_entropy(out, y)


def feature_loss(s_feats: _Features, t_feats: _Features, layers: list[str]):
    """Mean over layers of the student/teacher output MSE, normalised by the teacher's energy."""
    import torch.nn.functional as F

    total = 0
    for n in layers:
        target = t_feats.outputs[n].detach()
        total = total + F.mse_loss(s_feats.outputs[n], target) / target.pow(2).mean().clamp_min(1e-8)
    return total / len(layers)


class _Session:
    """The state of one `fit` call: model, optimiser, schedule, hooks; one method per job."""

    def __init__(self, model, train_set, val_set, opts: TrainOptions, teacher, feature_layers):
        import torch

        self.opts, self.model, self.teacher, self.val_set = opts, model, teacher, val_set
        self.dist = _distributed(opts.device)
        self.rank = self.dist.get_rank() if self.dist else 0
        self.device = opts.device
        model.to(self.device)
        if teacher is not None:
            teacher.to(self.device).eval()
            n_s, n_t = (
                _num_classes(model, train_set, self.device),
                _num_classes(teacher, train_set, self.device),
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
        self.s_feats = _Features(model, self.layers) if self.layers else None
        self.t_feats = _Features(teacher, self.layers) if self.layers else None
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

        state = _load_checkpoint(Path(self.opts.checkpoint))
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
        _save_checkpoint(
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
    import copy

    import torch

    opts = (options or TrainOptions()).validate()
    torch.manual_seed(opts.seed)
    session = _Session(model, train_set, val_set, opts, teacher, feature_layers)
    result = TrainResult(model)
    start_epoch, best_state = 0, None
    if opts.resume and opts.checkpoint and Path(opts.checkpoint).is_file():
        start_epoch, best_state = session.resume(result)
    elif opts.resume:
        log.warning("--resume: no checkpoint at %s; training from the start", opts.checkpoint)
    if start_epoch == 0 and val_set is not None:
        result.initial_val_top1 = evaluate_top1(model, val_set, device=opts.device)
        result.curve.append((0, result.initial_val_top1))
        # The starting weights compete too: a fine-tune (a distilled student) that only got worse
        # hands back what it was given (a ResNet-50 student once went from 90.9% to 17.0%).
        result.best_val_top1, result.best_epoch = result.initial_val_top1, 0
        best_state = copy.deepcopy(model.state_dict())
    since_best = 0
    try:
        for epoch in range(start_epoch, opts.epochs):
            entry = session.epoch(epoch, result, on_step)
            result.history.append(entry)
            val = entry.val_top1
            if val is not None and (result.best_val_top1 is None or val > result.best_val_top1):
                result.best_val_top1, result.best_epoch, since_best = val, epoch + 1, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                since_best += 1
                if val is not None and val == result.best_val_top1:
                    # A tie keeps the later, longer-trained weights (a small validation set ties
                    # often: one run had kept epoch 1 of 12); patience still runs, so a plateau stops.
                    result.best_epoch, best_state = epoch + 1, copy.deepcopy(model.state_dict())
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
    if best_state is not None:
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
    model.eval()
    return result


def check_labels(model, datasets) -> None:
    """Every label of the data is one of the model's outputs, checked before any training (a label
    file with 999 for a 3-class model would otherwise stop training at its first batch)."""
    datasets = [d for d in datasets if d is not None and len(d)]
    if not datasets:
        return
    device = next(model.parameters()).device  # wherever the caller put it: training moves it later
    outputs = _num_classes(model, datasets[0], device)
    for dataset in datasets:
        labels = dataset.label_values()
        if labels is None or not len(labels):
            continue
        if int(labels.min()) < 0:
            raise BadArgumentError(
                f"{dataset.source} has unlabelled images; training needs class subfolders or a labels file"
            )
        if int(labels.max()) >= outputs:
            raise BadArgumentError(
                f"{dataset.source} has label {int(labels.max())} but the model has {outputs} outputs "
                f"(labels 0..{outputs - 1}); check the labels file or --num-classes"
            )


def _first_readable(dataset):
    for i in range(len(dataset)):
        try:
            return dataset[i]
        except OSError:
            continue
    dataset.require_readable("training")  # raises: none can be read


def _num_classes(model, dataset, device) -> int:
    import torch

    x, _ = _first_readable(dataset)
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(torch.as_tensor(x)[None].to(device))
    model.train(was)
    return logits(out).shape[1]
