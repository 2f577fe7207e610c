"""The model as one typed value: a `Card` (what every stage needs besides the module) and a `Model`.

The card travels with the module, so no stage looks a model up by name to learn its input size,
channels, classes or preprocessing (timm's `pretrained_cfg` is the pattern). The zoo's spec makes one
(`ModelSpec.card`), `card_from` makes one for any module, and a model file's header holds one.
This module sits beside `errors` and `artifacts` at the bottom of the import order: no torch at import.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from edgecnn.errors import BadArgumentError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TASKS = ("classification", "segmentation")
# A base's structure comes from the zoo (rebuilt by name) or from a module the caller hands in (a
# file made from it reloads only onto that module), or by reference (`edgecnn.zoo.external`): one of
# timm's architectures, or the user's builder function, whose file reloads only where it is trusted.
ZOO, MODULE, TIMM, BUILDER = "zoo", "module", "timm", "builder"


@dataclass(frozen=True)
class WeightsInfo:
    """Where a model's weights came from, for manifests and reports."""

    source: str  # "random", "imagenet", "file", "converted" or "module" (handed in from Python)
    path: str | None = None
    sha256: str | None = None
    detail: str | None = None


def fit_channels(values, chans: int) -> tuple[float, ...]:
    """Per-channel statistics for `chans` channels: kept, averaged to grey, or repeated."""
    values = tuple(float(v) for v in values)
    if len(values) == chans:
        return values
    if chans < 1:
        raise BadArgumentError(f"in_chans must be >= 1, got {chans}")
    if chans == 1:
        return (sum(values) / len(values),)
    return tuple(values[i % len(values)] for i in range(chans))


def check_mean_std(mean, std) -> None:
    """`--mean` / `--std` for a graph that records no normalisation: both or neither, std positive."""
    if (mean is None) != (std is None):
        raise BadArgumentError("give --mean and --std together (one value per channel, or one for all)")
    if std is not None and not all(v > 0 for v in std):
        raise BadArgumentError(f"--std must be positive, got {','.join(map(str, std))}")


def mean_std_problem(mean, std, chans: int) -> str | None:
    """Why `--mean` / `--std` do not fit a `chans`-channel input (1 or `chans` values each), or None."""
    counts = {len(v) for v in (mean, std) if v is not None}
    if counts - {1, chans}:
        need = "one value each" if chans == 1 else f"1 or {chans} values each"
        return f"--mean and --std need {need} for this {chans}-channel input"
    return None


@dataclass(frozen=True)
class Card:
    """Name, task, input (size, channels, mean/std, resize before the centre crop) and classes."""

    name: str
    input_size: tuple[int, int]
    in_chans: int = 3
    num_classes: int = 1000
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    resize_size: int | None = None  # shorter side before the centre crop (None: resize straight)
    task: str = "classification"
    class_names: tuple[str, ...] | None = None
    fixed_input: bool = False  # no global pooling: only `input_size` works
    min_input_size: int = 1

    def __post_init__(self) -> None:
        def bad(name: str, why: str):
            raise BadArgumentError(f"model card of {self.name!r}: {name} {why}")

        size = self.input_size
        if not (len(size) == 2 and all(isinstance(v, int) and v >= 1 for v in size)):
            bad("input_size", f"must be two positive integers (H, W), got {size!r}")
        for key in ("in_chans", "num_classes", "min_input_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                bad(key, f"must be a positive integer, got {value!r}")
        for key in ("mean", "std"):
            values = getattr(self, key)
            if len(values) != self.in_chans or not all(math.isfinite(v) for v in values):
                bad(key, f"must hold {self.in_chans} finite numbers (one per channel), got {values!r}")
        if min(self.std) <= 0:
            bad("std", f"must be positive, got {self.std!r}")
        if self.resize_size is not None and self.resize_size < 1:
            bad("resize_size", f"must be positive or None, got {self.resize_size!r}")
        if self.task not in TASKS:
            bad("task", f"must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            bad("class_names", f"must list {self.num_classes} names, got {len(self.class_names)}")
        self.check_fits(self.input_size)

    def check_fits(self, size, batch: int = 1) -> None:
        """The input and a first layer's output as large (fp32) fit this machine's memory: a header
        or --input-size no machine here can hold is a one-line error before any allocation."""
        from edgecnn.errors import check_fits_memory

        h, w = size
        check_fits_memory(
            2 * 4 * batch * self.in_chans * h * w,
            f"{self.name} at {h}x{w}x{self.in_chans}, batch {batch},",
            "choose a smaller input size or batch",
        )

    def replace(self, **changes) -> Card:
        return dataclasses.replace(self, **changes)

    def at_size(self, size) -> Card:
        """This card for input `size`, the resize before the crop scaled alike (ImageNet's 256 -> 224
        becomes 37 -> 32)."""
        size = tuple(int(v) for v in size)
        resize = self.resize_size
        if resize and size != tuple(self.input_size):
            resize = round(resize * min(size) / min(self.input_size))
        return self.replace(input_size=size, resize_size=resize)

    def check_input_size(self, size=None) -> tuple[int, int]:
        """`size` (default: the card's) as (H, W) when the model accepts it, else a one-line error."""
        h, w = tuple(size or self.input_size)
        if self.fixed_input and (h, w) != tuple(self.input_size):
            raise BadArgumentError(
                f"{self.name} has a fixed-size classifier: only --input-size {self.input_size[0]},"
                f"{self.input_size[1]} works, not {h},{w}"
            )
        if min(h, w) < self.min_input_size:
            raise BadArgumentError(
                f"input size {h}x{w} is too small for {self.name} (at least "
                f"{self.min_input_size}x{self.min_input_size})"
            )
        self.check_fits((h, w))
        return h, w

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(input_size=list(self.input_size), mean=list(self.mean), std=list(self.std))
        d["class_names"] = list(self.class_names) if self.class_names is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Card:
        """The card a model file's header holds; a field of the wrong kind is a BadArgumentError."""
        if not isinstance(d, dict):
            raise BadArgumentError(f"a model card must be an object, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise BadArgumentError(f"model card has unknown fields: {', '.join(unknown)}")
        d = dict(d)
        try:
            for key in ("input_size", "mean", "std"):
                if key in d:
                    d[key] = tuple(d[key])
            if d.get("class_names") is not None:
                d["class_names"] = tuple(str(n) for n in d["class_names"])
            return cls(**d)
        except TypeError as e:
            raise BadArgumentError(f"model card does not parse ({e})") from None


def card_from(
    module,
    *,
    input_size: tuple[int, int],
    name: str | None = None,
    in_chans: int | None = None,
    num_classes: int | None = None,
    mean=None,
    std=None,
    resize_size: int | None = None,
    class_names=None,
    task: str = "classification",
) -> Card:
    """A card for any `nn.Module`. Channels come from its first conv or linear layer and classes from
    one forward pass at `input_size` (which also proves the module runs at that size); mean/std
    default to ImageNet's, fitted to the channels."""
    import torch

    size = tuple(int(v) for v in input_size)
    if in_chans is None:
        first = next((m for m in module.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)), None)
        if first is None:
            raise BadArgumentError("the module has no Conv2d or Linear layer: give in_chans=")
        in_chans = first.in_channels if isinstance(first, torch.nn.Conv2d) else first.in_features
    if num_classes is None:
        num_classes = len(class_names) if class_names is not None else _output_classes(module, in_chans, size)
    return Card(
        name=name or type(module).__name__.lower(),
        input_size=size,
        in_chans=in_chans,
        num_classes=num_classes,
        mean=fit_channels(IMAGENET_MEAN if mean is None else mean, in_chans),
        std=fit_channels(IMAGENET_STD if std is None else std, in_chans),
        resize_size=resize_size,
        task=task,
        class_names=tuple(class_names) if class_names is not None else None,
    )


def _output_classes(module, in_chans: int, size) -> int:
    import torch

    param = next(module.parameters(), None)
    x = torch.zeros(1, in_chans, *size, device=param.device if param is not None else "cpu")
    was_training = module.training
    try:
        with torch.no_grad():
            y = module.eval()(x)
    except RuntimeError as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadArgumentError(f"the module does not run at {size[0]}x{size[1]}x{in_chans}: {why}") from None
    finally:
        module.train(was_training)
    y = logits(y)
    return int(y.shape[1])


def logits(y):
    """The class scores of a model's output: torchvision's segmentation models return {"out": ...}."""
    return y["out"] if isinstance(y, dict) else y


@dataclass
class Model:
    """A module with its card, where its weights came from, how it is rebuilt, and the header of the
    model file it came from (None for a model built or handed in now)."""

    module: object  # torch.nn.Module; typed loosely so this module imports without torch
    card: Card
    weights: WeightsInfo = field(default_factory=lambda: WeightsInfo(MODULE))
    base: dict = field(default_factory=lambda: {"kind": MODULE})  # {"kind": "zoo", "name", "kwargs"}
    recipe: dict | None = None
    path: str | None = None  # the model file it was read from

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def num_classes(self) -> int:
        return self.card.num_classes

    @property
    def in_chans(self) -> int:
        return self.card.in_chans
