"""Model registry: name -> frozen `ModelSpec`.

The registry is plain data and imports no torch, so `edgecnn zoo` and `edgecnn --help` stay instant;
each spec names its builder as "module:function", imported only when a model is actually built.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from edgecnn.card import IMAGENET_MEAN, IMAGENET_STD, Card, fit_channels
from edgecnn.errors import BadArgumentError, UnknownNameError


@dataclass(frozen=True)
class ModelSpec:
    """What edgecnn knows about an architecture before building it.

    `params` and `macs` are for the default configuration (num_classes, in_chans, input_size) and are
    checked against a recomputation by the test suite. MACs are multiply-accumulates of conv and
    linear layers for one image (FLOPs = 2 x MACs).
    """

    name: str
    family: str
    builder: str
    params: int
    macs: int
    task: str = "classification"
    input_size: tuple[int, int] = (224, 224)
    resize_size: int | None = 256
    in_chans: int = 3
    num_classes: int = 1000
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    source: str = "torchvision"
    acc1: float | None = None
    acc5: float | None = None
    acc_source: str | None = None
    # Name of torchvision's weights enum entry point (get_model_weights), when pretrained sets exist.
    torchvision_weights: str | None = None
    # The classifier has a fixed input size (no global pooling): only `input_size` works.
    fixed_input: bool = False
    # Smallest square input the model accepts, used for quick smoke tests and error messages.
    min_input_size: int = 32
    # State-dict prefixes of training-only heads that may be present in a checkpoint and are dropped.
    aux_prefixes: tuple[str, ...] = ()
    builder_kwargs: tuple[tuple[str, object], ...] = field(default=())

    def card(self, *, num_classes: int | None = None, in_chans: int | None = None, **changes) -> Card:
        """The card of this architecture built with `num_classes` / `in_chans` (default: the spec's);
        `changes` override other fields (a trained file's input size, classes, mean/std)."""
        chans = in_chans or self.in_chans
        card = Card(
            name=self.name,
            input_size=tuple(self.input_size),
            in_chans=chans,
            num_classes=num_classes or self.num_classes,
            mean=fit_channels(self.mean, chans),
            std=fit_channels(self.std, chans),
            resize_size=self.resize_size,
            task=self.task,
            fixed_input=self.fixed_input,
            min_input_size=self.min_input_size,
        )
        size = changes.pop("input_size", None)
        card = card.at_size(size) if size else card
        return card.replace(**{k: v for k, v in changes.items() if v is not None})

    @property
    def macs_g(self) -> float:
        return self.macs / 1e9

    @property
    def params_m(self) -> float:
        return self.params / 1e6


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a spec; a second spec with the same name is a programming error."""
    if spec.name in _REGISTRY:
        raise ValueError(f"model '{spec.name}' is already registered")
    if ":" not in spec.builder:
        raise ValueError(f"builder of '{spec.name}' must be 'module:function', got {spec.builder!r}")
    _REGISTRY[spec.name] = spec
    return spec


def _ensure_loaded() -> None:
    # The catalog registers everything on import; importing it here avoids an import cycle.
    from edgecnn.zoo import catalog  # noqa: F401


def list_models(pattern: str = "*", *, family: str | None = None, task: str | None = None) -> list[str]:
    """Registered names matching an fnmatch pattern (e.g. "res*"), sorted."""
    _ensure_loaded()
    return sorted(
        name
        for name, spec in _REGISTRY.items()
        if fnmatch.fnmatch(name, pattern)
        and (family is None or spec.family == family)
        and (task is None or spec.task == task)
    )


def list_specs(pattern: str = "*") -> list[ModelSpec]:
    """The specs of `list_models(pattern)`: what `edgecnn zoo` shows."""
    return [get_spec(name) for name in list_models(pattern)]


# Files named where a model name goes that are not models edgecnn can rebuild: what to do instead
NOT_A_NAME = {
    "onnx": "an ONNX graph: inspect, export and bench take it as it is; this command needs the PyTorch "
    "model (a zoo name, timm:NAME, file.py:function or an edgecnn model file)",
    "xml": "an OpenVINO IR: bench takes it as it is; this command needs the PyTorch model",
    "pth": "give a zoo model name, timm:NAME, file.py:function or a .safetensors model file written by "
    "edgecnn; for a model with your weights use MODEL --weights FILE",
}
NOT_A_NAME["pt"] = NOT_A_NAME["pth"]


def refuse_file(name) -> None:
    """A file of NOT_A_NAME's kinds where a model name goes: one line naming what to give instead."""
    suffix = str(name).rsplit(".", 1)[-1].lower() if "." in str(name) else ""
    if suffix in NOT_A_NAME:
        raise BadArgumentError(f"{name}: {NOT_A_NAME[suffix]}")


def get_spec(name: str) -> ModelSpec:
    """The spec for `name`; an unknown name raises with close matches."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        pass
    refuse_file(name)
    raise UnknownNameError("model", name, _REGISTRY) from None


def check_input_size(spec: ModelSpec, size: tuple[int, int]) -> tuple[int, int]:
    """`size` as (H, W) when `spec`'s model accepts it, else a one-line error naming what works."""
    return spec.card().check_input_size(size)


def card_for(name: str, **changes) -> Card:
    """The card of zoo model `name` (`ModelSpec.card`'s arguments), or of a reference to a model
    outside the zoo (`edgecnn.zoo.external`): how a name becomes a card."""
    from edgecnn.zoo import external

    if external.kind_of(name):
        return external.card(name, **changes)
    return get_spec(name).card(**changes)
