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

    def validate(self, kind: str) -> SwapOptions:
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


def selected(name: str, options: SwapOptions) -> bool:
    if options.include and not any(fnmatch.fnmatch(name, p) for p in options.include):
        return False
    return not any(fnmatch.fnmatch(name, p) for p in options.exclude)


def conv_geometry(model, example) -> dict[str, tuple[int, int]]:
    """Input and output spatial sizes (H*W) of every Conv2d, from one forward pass."""
    import torch
    from torch import nn

    sizes: dict[str, tuple[int, int]] = {}

    def hook(name):
        def fn(module, args, out):  # must return None: a returned value would replace the output
            sizes.setdefault(name, (math.prod(args[0].shape[2:]), math.prod(out.shape[2:])))

        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return sizes


def rank_for_energy(squared: list[float] | object, energy: float) -> int:
    """Smallest r whose leading r squared singular values hold `energy` of the total."""
    import torch

    sq = torch.as_tensor(squared, dtype=torch.float64)
    kept = sq.cumsum(0) / sq.sum()
    return int(torch.searchsorted(kept, torch.tensor(energy - 1e-12, dtype=torch.float64)).item()) + 1


def swap_candidates(model, options: SwapOptions, report: TransformReport):
    """(name, conv) for every standard KxK conv the options select; the rest go to report.skipped."""
    from torch import nn

    for name, module in model.named_modules():
        if type(module) is not nn.Conv2d:
            continue
        if module.groups != 1:
            why = "depthwise" if module.groups == module.in_channels else f"grouped ({module.groups} groups)"
            report.skipped.append((name, f"{why} conv"))
        elif math.prod(module.kernel_size) == 1:
            report.skipped.append((name, "1x1 conv"))
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


def swap_convs(kind: str, model, options: SwapOptions, example, plan: Callable, replay: Callable):
    """The loop both swaps share; `plan(name, conv, options, in_hw, out_hw)` decides one layer.

    plan returns (LayerChange, recipe value, weights of the replacement's convs in order); the conv's
    bias goes onto the replacement's last conv.
    """
    import torch

    options = options.validate(kind)
    new = copy.deepcopy(model)
    report = TransformReport(kind)
    sizes = conv_geometry(new, example)
    layers, weights = {}, {}
    for name, conv in list(swap_candidates(new, options, report)):
        if name not in sizes:
            report.skipped.append((name, "not used in the forward pass"))
            continue
        change, value, tensors = plan(name, conv, options, *sizes[name])
        if keep_or_skip(change, options, report):
            layers[name] = value
            weights[name] = (tensors, conv.bias)
    replay(new, {"layers": layers})
    with torch.no_grad():
        for name, (tensors, bias) in weights.items():
            block = new.get_submodule(name)
            for sub, w in zip(block, tensors, strict=True):
                sub.weight.copy_(w)
            if bias is not None:
                block[-1].bias.copy_(bias)
    report.recipe = {"layers": layers}
    return new, report
