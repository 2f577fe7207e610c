"""`convert`: fold BN, then the requested swaps, with totals and the output error measured.

The result's recipe (zoo name, build options, transforms with their per-layer ranks) is what
`transforms.io` saves in the file header and replays on load.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field

from edgecnn.errors import BadArgumentError
from edgecnn.transforms.base import SwapOptions, TransformReport
from edgecnn.transforms.model_file import input_size_of, model_recipe

log = logging.getLogger(__name__)


@dataclass
class ConvertResult:
    model: object
    recipe: dict
    reports: list[TransformReport]
    input_size: tuple[int, int]
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    output_error: float  # ||y_converted - y_original|| / ||y_original|| on a seeded random input
    path: str | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("model", "reports")}
        d["reports"] = [asdict(r) for r in self.reports]
        d["mac_reduction"] = self.macs_before / self.macs_after
        return d


def _output(model, x):
    import torch

    from edgecnn.card import logits

    with torch.no_grad():
        return logits(model(x))


def _no_swap_message(report: TransformReport, model_name: str) -> str:
    reasons = Counter(
        why.split(" (")[0] if "rank" not in why else "rank too high to save MACs" for _, why in report.skipped
    )
    summary = ", ".join(f"{n} {why}" for why, n in reasons.most_common(3)) or "it has no eligible layer"
    return (
        f"{report.transform} swapped no layer of {model_name} ({summary}); "
        "try a lower --energy / --rank, or other --include patterns"
    )


def convert(
    loaded,
    *,
    fold_bn: bool = True,
    separable: SwapOptions | None = None,
    bottleneck: SwapOptions | None = None,
    lowrank: SwapOptions | None = None,
    prune: float | None = None,
    input_size: tuple[int, int] | None = None,
    seed: int = 0,
) -> ConvertResult:
    """Apply the requested transforms to a `LoadedModel`; the original is left untouched. `prune`:
    the fraction of each coupled channel group removed (uniform, the weakest by L2 norm), before the
    swaps."""
    import torch

    from edgecnn.analysis import analyze
    from edgecnn.transforms.bottleneck import bottleneck as bottleneck_fn
    from edgecnn.transforms.fold_bn import fold_bn as fold_bn_fn
    from edgecnn.transforms.lowrank import lowrank as lowrank_fn
    from edgecnn.transforms.separable import separable as separable_fn

    if not (fold_bn or separable or bottleneck or lowrank or prune):
        raise BadArgumentError(
            "nothing to convert: give --fold-bn, --prune, --separable, --bottleneck and/or --lowrank"
        )
    if prune is not None:
        from edgecnn.transforms.prune import check_ratio

        check_ratio(prune)
    size = input_size_of(loaded, input_size)
    gen = torch.Generator().manual_seed(seed)
    example = torch.randn(1, loaded.in_chans, *size, generator=gen)
    original = loaded.module
    before = analyze(original, size, in_chans=loaded.in_chans)
    model, reports = original, []
    if fold_bn:
        model, report = fold_bn_fn(model, example=example)
        reports.append(report)
        if not report.recipe["pairs"]:
            log.warning("%s has no BatchNorm that follows a conv: nothing folded", loaded.card.name)
    if prune:
        from edgecnn.transforms.prune import prune_uniform

        model, report = prune_uniform(model, prune, example)
        reports.append(report)
    for options, swap in ((separable, separable_fn), (bottleneck, bottleneck_fn), (lowrank, lowrank_fn)):
        if options is None:
            continue
        model, report = swap(model, options, example=example)
        if not report.changed:
            raise BadArgumentError(_no_swap_message(report, loaded.card.name))
        reports.append(report)
    return _result(loaded, model, reports, size, example, before)


def convert_exact(loaded, steps: list[dict], *, input_size: tuple[int, int] | None = None, seed: int = 0):
    """Swap exactly the layers at exactly the ranks of `steps` (recipe steps such as a plan's:
    {"name": "separable", "layers": {"layer1.0.conv1": 2}}), from the trained weights, BN kept; a
    {"name": "prune", "groups": {root: kept channels}} step cuts those groups first."""
    import copy

    import torch

    from edgecnn.analysis import analyze
    from edgecnn.transforms import SWAPS
    from edgecnn.transforms.base import TransformReport, conv_geometry

    size = input_size_of(loaded, input_size)
    example = torch.randn(1, loaded.in_chans, *size, generator=torch.Generator().manual_seed(seed))
    before = analyze(loaded.module, size, in_chans=loaded.in_chans)
    model = copy.deepcopy(loaded.module)
    sizes = conv_geometry(model, example)
    reports = []
    for step in steps:
        if step["name"] == "prune":  # the plan's kept channels per group root, before any swap
            from edgecnn.transforms.prune import prune

            model, report = prune(model, dict(step["groups"]), example)
            reports.append(report)
            continue
        swap, report = SWAPS[step["name"]], TransformReport(step["name"])
        for name, value in step["layers"].items():
            ranks = tuple(value) if isinstance(value, list | tuple) else (value,)
            options = SwapOptions(exact=ranks).validate(swap.kind)
            change, recorded, block = swap.layer(name, model.get_submodule(name), options, *sizes[name])
            report.changed.append(change)
            report.recipe.setdefault("layers", {})[name] = recorded
            model.set_submodule(name, block)
        reports.append(report)
    return _result(loaded, model.eval(), reports, size, example, before)


def _result(loaded, model, reports, size, example, before) -> ConvertResult:
    from edgecnn.analysis import analyze

    after = analyze(model, size, in_chans=loaded.in_chans)
    y0, y1 = _output(loaded.module, example), _output(model, example)
    err = float((y1 - y0).norm() / y0.norm().clamp_min(1e-12))
    recipe = model_recipe(loaded, size, [{"name": r.transform, **r.recipe} for r in reports])
    return ConvertResult(
        model, recipe, reports, size, before.params, after.params, before.macs, after.macs, err
    )
