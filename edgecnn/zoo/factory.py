"""Build a registered model by name, with optional weights."""

from __future__ import annotations

import logging
from pathlib import Path

from edgecnn.artifacts import sha256_file
from edgecnn.card import ZOO, Model, WeightsInfo
from edgecnn.errors import BadArgumentError, WeightsError
from edgecnn.lazy import import_string
from edgecnn.zoo.registry import ModelSpec, get_spec
from edgecnn.zoo.weights import (
    PRETRAINED,
    apply_state_dict,
    pretrained_state_dict,
    read_state_dict,
)

log = logging.getLogger(__name__)


def _builder(spec: ModelSpec):
    return import_string(spec.builder)


def load_model(
    name: str,
    *,
    weights: str | Path | None = None,
    num_classes: int | None = None,
    in_chans: int | None = None,
    device: str | None = None,
    reset_head: bool = False,
    for_training: bool = False,
    **kwargs,
) -> Model:
    """Build `name` in eval mode, as a `Model` whose card is the spec's (with these classes/channels).

    weights: None (random init), "imagenet" (torchvision's default set) or a .pth/.pt/.safetensors
    path. Arguments left as None keep the spec's defaults, so CLI defaults never override a model's.
    reset_head: fine-tuning: weights of another class count load all but the classifier head, which
    starts fresh with `num_classes` outputs (what `train` does with your data's classes).
    device="meta" builds shapes only (no memory, no weights), which is how `inspect` stays instant;
    for_training: random weights are where training starts, not a warning."""
    import torch

    from edgecnn.zoo import external

    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if device == "meta" and weights is not None:
        raise BadArgumentError("weights cannot be loaded on the meta device")
    if external.kind_of(name):
        args = dict(weights=weights, num_classes=num_classes, in_chans=in_chans, device=device)
        return external.load(name, **args, reset_head=reset_head, **kwargs)
    spec = get_spec(name)
    if num_classes is None and weights is not None and str(weights).endswith(".safetensors"):
        num_classes = _trained_classes(Path(weights), spec.name)  # what `train` recorded, if it did
    num_classes = spec.num_classes if num_classes is None else num_classes
    in_chans = spec.in_chans if in_chans is None else in_chans
    if num_classes < 1 or in_chans < 1:
        raise BadArgumentError(f"num_classes and in_chans must be >= 1, got {num_classes} and {in_chans}")
    build_kwargs = {**dict(spec.builder_kwargs), **kwargs}

    builder = _builder(spec)
    pretrained = weights is not None and str(weights) == PRETRAINED
    if pretrained and num_classes != spec.num_classes and not reset_head:
        raise BadArgumentError(
            f"{PRETRAINED} weights for {name} have {spec.num_classes} classes, not {num_classes}; "
            "`edgecnn train --weights imagenet --data DIR` fine-tunes them to your classes"
        )
    head = num_classes if reset_head else None
    try:
        with torch.device(device or "cpu"):
            # Pretrained sets are stored for the default stem; adapt the stem after loading.
            model = builder(
                num_classes=num_classes, in_chans=spec.in_chans if pretrained else in_chans, **build_kwargs
            )
    except TypeError as e:
        raise BadArgumentError(f"bad option for {name}: {e}") from None

    quiet = device == "meta" or for_training
    info = _load_weights(model, spec, weights, head=head, in_chans=in_chans, quiet=quiet)
    base = {"kind": ZOO, "name": spec.name, "kwargs": build_kwargs}
    card = spec.card(num_classes=num_classes, in_chans=in_chans)
    return Model(model.eval(), card, info, base)


def _load_weights(model, spec: ModelSpec, weights, *, head, in_chans: int, quiet: bool) -> WeightsInfo:
    """Load `weights` (None, PRETRAINED or a file) into the built `model`; what was loaded, hashed."""
    if weights is None:
        if not quiet:  # a meta model has shapes only (no numbers come out of it); training starts so
            log.warning(
                "%s has random weights: accuracy numbers are meaningless without --weights", spec.name
            )
        return WeightsInfo("random")
    if str(weights) == PRETRAINED:
        state, info = pretrained_state_dict(spec)
        apply_state_dict(model, state, origin=str(info.detail), fresh_head=head, **_names(spec))
        if hasattr(model, "transform_input"):  # torchvision's Inception-v3 weights expect this on
            model.transform_input = True
        if in_chans != spec.in_chans:  # pretrained sets are stored for the default stem
            from edgecnn.zoo.torchvision_models import replace_first_conv

            replace_first_conv(model, in_chans)
        return WeightsInfo(info.source, info.path, sha256_file(Path(info.path)), info.detail)
    path = Path(weights)
    if path.suffix not in (".pth", ".pt", ".bin", ".safetensors"):
        raise WeightsError(
            f"unsupported weights '{weights}': use '{PRETRAINED}' or a .pth/.pt/.safetensors file"
        )
    apply_state_dict(model, read_state_dict(path), origin=str(path), fresh_head=head, **_names(spec))
    return WeightsInfo("file", str(path.resolve()), sha256_file(path))


def _names(spec) -> dict:
    return {"name": spec.name, "aux_prefixes": spec.aux_prefixes}


def _trained_classes(path: Path, model: str) -> int | None:
    """The class count an edgecnn model file records (None for other files), so
    `--weights export/m/m.trained.safetensors` needs no --num-classes."""
    import json

    from safetensors import safe_open

    if not path.is_file():
        return None  # the loader says it is missing
    try:
        with safe_open(str(path), "pt") as f:
            header = f.metadata() or {}
        meta = json.loads(header.get("edgecnn") or header.get("edgecnn-train") or "{}")
    except Exception:  # not a safetensors file after all: the loader names the problem
        return None
    if not isinstance(meta, dict):
        return None
    if meta.get("transforms"):
        raise WeightsError(
            f"{path} is a converted model (layers swapped): give the file itself in place of "
            f"{meta.get('model', 'the model name')}, not as --weights"
        )
    if meta.get("model") not in (None, model):
        raise WeightsError(f"{path} holds trained {meta['model']} weights, not {model}")
    classes = meta.get("num_classes")
    return classes if isinstance(classes, int) and classes > 0 else None


def create_model(name: str, **kwargs):
    """Just the nn.Module of `load_model` (same arguments)."""
    return load_model(name, **kwargs).module
