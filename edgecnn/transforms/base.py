"""What the transforms share: options, per-layer reports, layer selection and conv geometry.

Every transform is a pure function `(model, options) -> (new_model, report)`: it deep-copies the
model, and its report carries a `recipe` from which `replay` can rebuild the same structure (with
empty weights) so a converted model reloads from a plain safetensors state dict.
"""

from __future__ import annotations

import copy
import fnmatch
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from edgecnn.errors import BadArgumentError


@dataclass(frozen=True)
class SwapOptions:
    """Which convolutions to swap and at which rank.

    rank: separable channel multiplier T (per layer, clamped to min(N, K*K)).
    rank_ratio: bottleneck ranks as a fraction of the input / output channels.
    energy: smallest rank keeping this fraction of the squared singular values.
    min_mac_saving: fraction of a layer's MACs the swap must save (None: swap even if MACs grow,
    which is how exact full-rank reconstructions are tested).
    max_error: skip a layer whose relative weight reconstruction error would exceed this.
    """

    rank: int | None = None
    rank_ratio: float | None = None
    energy: float | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    min_mac_saving: float | None = 0.0
    max_error: float | None = None
    # Ranks rounded to multiples of this where they are at least that large (runtimes run channel
    # counts that are multiples of 8 faster); 1 keeps them as computed.
    multiple_of: int = 1
    # The ranks themselves ((T,), (R1, R2) or (r,)): a planner's per-layer choice; overrides the rest.
    exact: tuple[int, ...] | None = None

    def validate(self, kind: str) -> SwapOptions:
        if self.exact is not None:
            if not self.exact or min(self.exact) < 1:
                raise BadArgumentError(f"{kind}: exact ranks must be positive, got {self.exact}")
            return self
        rank_opt = "rank" if kind == "separable" else "rank_ratio"
        given = [n for n in (rank_opt, "energy") if getattr(self, n) is not None]
        if len(given) > 1:
            raise BadArgumentError(
                f"{kind}: give either --{rank_opt.replace('_', '-')} or --energy, not both"
            )
        wrong = "rank_ratio" if kind == "separable" else "rank"
        if getattr(self, wrong) is not None:
            raise BadArgumentError(
                f"{kind} takes --{rank_opt.replace('_', '-')}, not --{wrong.replace('_', '-')}"
            )
        if self.rank is not None and self.rank < 1:
            raise BadArgumentError(f"--rank must be a positive integer, got {self.rank}")
        if self.rank_ratio is not None and not 0 < self.rank_ratio <= 1:
            raise BadArgumentError(f"--rank-ratio must be in (0, 1], got {self.rank_ratio}")
        if self.energy is not None and not 0 < self.energy <= 1:
            raise BadArgumentError(f"--energy must be in (0, 1], got {self.energy}")
        if self.min_mac_saving is not None and not 0 <= self.min_mac_saving < 1:
            raise BadArgumentError(f"--min-mac-saving must be in [0, 1), got {self.min_mac_saving}")
        if self.multiple_of < 1:
            raise BadArgumentError(f"multiple_of must be >= 1, got {self.multiple_of}")
        if self.max_error is not None and self.max_error < 0:
            raise BadArgumentError(f"--max-error must be >= 0, got {self.max_error}")
        if not given:  # a sensible default: keep 90% of the spectral energy
            return SwapOptions(**{**self.__dict__, "energy": 0.9})
        return self


@dataclass(frozen=True)
class LayerChange:
    name: str
    kind: str
    kernel: tuple[int, int]
    in_channels: int
    out_channels: int
    rank: tuple[int, ...]  # (T,) for separable, (R1, R2) for bottleneck
    weight_error: float  # ||W - W_hat||_F / ||W||_F
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int


@dataclass
class TransformReport:
    transform: str
    changed: list[LayerChange] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (layer, why)
    recipe: dict = field(default_factory=dict)
    groups: dict[str, tuple[int, int]] = field(default_factory=dict)  # prune: root -> (channels, kept)


def selected(name: str, options: SwapOptions) -> bool:
    if options.include and not any(fnmatch.fnmatch(name, p) for p in options.include):
        return False
    return not any(fnmatch.fnmatch(name, p) for p in options.exclude)


def round_rank(rank: int, options: SwapOptions, cap: int) -> int:
    """`rank` rounded to the nearest multiple of options.multiple_of (never below one, never above cap)."""
    m = options.multiple_of
    if m > 1 and rank >= m:
        rank = max(m, round(rank / m) * m)
    return max(1, min(rank, cap))


def run_with_hooks(model, example, hooks: dict) -> None:
    """One no-grad forward of `model` on `example` with forward hooks {module: fn(module, args, out)}
    attached, removed again whatever happens. A hook must return None (a value replaces the output)."""
    import torch

    from edgecnn.analysis import hooked

    with hooked(model, forward=hooks), torch.no_grad():
        model(example)


def conv_geometry(model, example) -> dict[str, tuple[int, int]]:
    """Input and output spatial sizes (H*W) of every Conv2d, and positions per sample of every Linear
    (1 for a classifier head), from one forward pass."""
    from torch import nn

    sizes: dict[str, tuple[int, int]] = {}

    def hook(name):
        def fn(module, args, out):  # must return None: a returned value would replace the output
            lo = 1 if isinstance(module, nn.Linear) else 2
            hi = -1 if isinstance(module, nn.Linear) else None
            sizes.setdefault(name, (math.prod(args[0].shape[lo:hi]), math.prod(out.shape[lo:hi])))

        return fn

    layers = (nn.Conv2d, nn.Linear)
    run_with_hooks(model, example, {m: hook(n) for n, m in model.named_modules() if isinstance(m, layers)})
    return sizes


def memo_by_weight(fn: Callable) -> Callable:
    """Cache `fn(layer)` per weight tensor (identity and version): a planner decomposes one layer at
    many ranks, and the factorisation is the expensive part. Small and bounded (the last 64)."""
    cache: dict = {}

    def wrapper(layer):
        w = layer.weight
        key = (id(w), w._version, w.data_ptr())
        if key not in cache:
            if len(cache) >= 64:
                cache.pop(next(iter(cache)))
            cache[key] = fn(layer)
        return cache[key]

    return wrapper


def rank_for_energy(squared: list[float] | object, energy: float) -> int:
    """Smallest r whose leading r squared singular values hold `energy` of the total."""
    import torch

    sq = torch.as_tensor(squared, dtype=torch.float64)
    kept = sq.cumsum(0) / sq.sum()
    return int(torch.searchsorted(kept, torch.tensor(energy - 1e-12, dtype=torch.float64)).item()) + 1


def subclass_reason(module) -> str:
    """Why a subclass of a layer edgecnn swaps is left as it is: its forward (timm's Conv2dSame pads
    at run time, StdConv2d standardises its weight) is not the plain layer's a swap reproduces."""
    kind, parent = type(module).__name__, type(module).__mro__[1].__name__
    return f"{kind}, a {parent} subclass whose forward a swap would not keep"


def kxk_conv(module) -> str | None:
    """None for a standard KxK conv (what separable and bottleneck swap), else why it is not one;
    layers of other types are not candidates at all ("")."""
    from torch import nn

    if not isinstance(module, nn.Conv2d):
        return ""
    if type(module) is not nn.Conv2d:
        return subclass_reason(module)
    if module.groups != 1:
        why = "depthwise" if module.groups == module.in_channels else f"grouped ({module.groups} groups)"
        return f"{why} conv"
    return "1x1 conv" if math.prod(module.kernel_size) == 1 else None


def swap_candidates(model, options: SwapOptions, report: TransformReport, eligible=kxk_conv):
    """(name, layer) for every layer `eligible` accepts that the options select; the rest of the
    layers of that type go to report.skipped with the reason."""
    for name, module in model.named_modules():
        why = eligible(module)
        if why == "":
            continue
        if why is not None:
            report.skipped.append((name, why))
        elif not selected(name, options):
            report.skipped.append((name, "not selected by --include/--exclude"))
        else:
            yield name, module


def keep_or_skip(change: LayerChange, options: SwapOptions, report: TransformReport) -> bool:
    """Apply the MAC-saving and error limits; record why a layer is skipped."""
    if options.min_mac_saving is not None:
        saving = 1 - change.macs_after / change.macs_before
        if saving <= options.min_mac_saving:
            report.skipped.append(
                (
                    change.name,
                    f"rank {change.rank} would save {saving:.0%} of MACs "
                    f"(need > {options.min_mac_saving:.0%})",
                )
            )
            return False
    if options.max_error is not None and change.weight_error > options.max_error:
        report.skipped.append(
            (change.name, f"weight error {change.weight_error:.3f} at rank {change.rank} > --max-error")
        )
        return False
    report.changed.append(change)
    return True


@dataclass(frozen=True)
class Swap:
    """One layer-replacing transform: how it decides a layer, builds the replacement, and which
    layers it takes. `plan(name, layer, options, in_hw, out_hw)` returns (LayerChange, recipe value,
    weights of the replacement's layers in order); `build(layer, value)` the uninitialised
    replacement (an nn.Sequential) whose last layer takes the original's bias."""

    kind: str
    plan: Callable
    build: Callable
    eligible: Callable = kxk_conv

    def layer(self, name: str, layer, options: SwapOptions, in_hw: int, out_hw: int):
        """(LayerChange, recipe value, replacement with its weights) for one layer, alone."""
        change, value, tensors = self.plan(name, layer, options, in_hw, out_hw)
        return change, value, self.fill(self.build(layer, value), tensors, layer.bias)

    @staticmethod
    def fill(block, tensors, bias):
        import torch

        with torch.no_grad():
            for sub, w in zip(block, tensors, strict=True):
                sub.weight.copy_(w.reshape(sub.weight.shape))
            if bias is not None:
                block[-1].bias.copy_(bias)
        return block

    def apply(self, model, options: SwapOptions, example):
        """(copy of `model` with every eligible, selected layer swapped, report)."""
        options = options.validate(self.kind)
        new = copy.deepcopy(model)
        report = TransformReport(self.kind)
        sizes = conv_geometry(new, example)
        layers = {}
        for name, layer in list(swap_candidates(new, options, report, self.eligible)):
            if name not in sizes:
                report.skipped.append((name, "not used in the forward pass"))
                continue
            change, value, tensors = self.plan(name, layer, options, *sizes[name])
            if keep_or_skip(change, options, report):
                layers[name] = value
                new.set_submodule(name, self.fill(self.build(layer, value), tensors, layer.bias))
        report.recipe = {"layers": layers}
        return new, report

    def replay(self, model, recipe: dict) -> None:
        """Swap each recorded layer for an (uninitialised) replacement of its recorded ranks."""
        for name, value in recipe["layers"].items():
            model.set_submodule(name, self.build(model.get_submodule(name), value))
