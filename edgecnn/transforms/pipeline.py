"""`convert`: fold BN, then the requested swaps, with totals and the output error measured.

A converted model is saved as one safetensors file whose header holds the recipe (zoo name, build
options, transforms with their per-layer ranks). Reloading rebuilds the zoo model, replays the
recipe's structure and loads the tensors: no pickle, no arbitrary code.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgecnn.artifacts import atomic_output
from edgecnn.errors import BadArgumentError, WeightsError
from edgecnn.transforms.base import SwapOptions, TransformReport

log = logging.getLogger(__name__)

FORMAT = "edgecnn-converted/1"
# Transform name -> structural replay, imported only when a converted model is loaded.
_REPLAY = {
    "fold_bn": "edgecnn.transforms.fold_bn:replay",
    "separable": "edgecnn.transforms.separable:replay",
    "bottleneck": "edgecnn.transforms.bottleneck:replay",
}


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

    with torch.no_grad():
        y = model(x)
    return y["out"] if isinstance(y, dict) else y


def _no_swap_message(report: TransformReport, model_name: str) -> str:
    reasons = Counter(
        why.split(" (")[0] if "rank" not in why else "rank too high to save MACs" for _, why in report.skipped
    )
    summary = ", ".join(f"{n} {why}" for why, n in reasons.most_common(3)) or "it has no KxK conv"
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
    input_size: tuple[int, int] | None = None,
    seed: int = 0,
) -> ConvertResult:
    """Apply the requested transforms to a `LoadedModel`; the original is left untouched."""
    import torch

    from edgecnn.analysis import analyze
    from edgecnn.transforms.bottleneck import bottleneck as bottleneck_fn
    from edgecnn.transforms.fold_bn import fold_bn as fold_bn_fn
    from edgecnn.transforms.separable import separable as separable_fn

    if not (fold_bn or separable or bottleneck):
        raise BadArgumentError("nothing to convert: give --fold-bn, --separable and/or --bottleneck")
    size = tuple(input_size or loaded.spec.input_size)
    gen = torch.Generator().manual_seed(seed)
    example = torch.randn(1, loaded.in_chans, *size, generator=gen)
    original = loaded.model
    before = analyze(original, size, in_chans=loaded.in_chans)
    model, reports = original, []
    if fold_bn:
        model, report = fold_bn_fn(model, example=example)
        reports.append(report)
        if not report.recipe["pairs"]:
            log.warning("%s has no BatchNorm that follows a conv: nothing folded", loaded.spec.name)
    for options, swap in ((separable, separable_fn), (bottleneck, bottleneck_fn)):
        if options is None:
            continue
        model, report = swap(model, options, example=example)
        if not report.changed:
            raise BadArgumentError(_no_swap_message(report, loaded.spec.name))
        reports.append(report)
    after = analyze(model, size, in_chans=loaded.in_chans)
    y0, y1 = _output(original, example), _output(model, example)
    err = float((y1 - y0).norm() / y0.norm().clamp_min(1e-12))
    recipe = {
        "format": FORMAT,
        "model": loaded.spec.name,
        "num_classes": loaded.num_classes,
        "in_chans": loaded.in_chans,
        "model_kwargs": loaded.model_kwargs,
        "input_size": list(size),
        "base_weights": asdict(loaded.weights),
        "transforms": [{"name": r.transform, **r.recipe} for r in reports],
    }
    return ConvertResult(
        model, recipe, reports, size, before.params, after.params, before.macs, after.macs, err
    )


def save_converted(result: ConvertResult, path: str | Path, *, force: bool = False) -> Path:
    """Write the converted weights and recipe atomically to a .safetensors file."""
    result.path = str(save_with_recipe(result.model, result.recipe, path, force=force))
    return Path(result.path)


def save_with_recipe(model, recipe: dict, path: str | Path, *, force: bool = False) -> Path:
    """A converted model (e.g. after distillation changed its weights) with the recipe that rebuilds it."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise BadArgumentError(f"converted models are saved as .safetensors, got {path.name}")
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {"edgecnn": json.dumps(recipe), "format": FORMAT}
    with atomic_output(path, force=force) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


def read_recipe(path: str | Path) -> dict:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise WeightsError(f"{path} is not a readable safetensors file ({e})") from None
    if meta.get("format") != FORMAT or "edgecnn" not in meta:
        raise WeightsError(f"{path} is not an edgecnn converted model (no '{FORMAT}' recipe in its header)")
    return json.loads(meta["edgecnn"])


def load_converted(path: str | Path):
    """Rebuild a converted model from its file: zoo build, structural replay, then the tensors."""
    from edgecnn.zoo import load_model
    from edgecnn.zoo.weights import WeightsInfo, apply_state_dict, read_state_dict, sha256_file

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"converted model not found: {path}")
    recipe = read_recipe(path)
    # Shapes only: every tensor comes from the file, so nothing is initialised twice.
    loaded = load_model(
        recipe["model"],
        num_classes=recipe["num_classes"],
        in_chans=recipe["in_chans"],
        device="meta",
        **recipe.get("model_kwargs", {}),
    )
    model = loaded.model
    for step in recipe["transforms"]:
        if step["name"] not in _REPLAY:
            raise WeightsError(f"{path} uses transform '{step['name']}', unknown to this edgecnn version")
        module, func = _REPLAY[step["name"]].split(":")
        getattr(importlib.import_module(module), func)(model, step)
    model = model.to_empty(device="cpu")
    apply_state_dict(model, read_state_dict(path), spec=loaded.spec, origin=str(path))
    loaded.model = model.eval()
    loaded.weights = WeightsInfo(
        "converted",
        str(path.resolve()),
        sha256_file(path),
        ", ".join(s["name"] for s in recipe["transforms"]),
    )
    loaded.recipe = recipe
    return loaded
