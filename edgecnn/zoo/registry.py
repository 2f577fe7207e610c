"""Model registry: name -> frozen `ModelSpec`.

The registry is plain data and imports no torch, so `edgecnn zoo` and `edgecnn --help` stay instant;
each spec names its builder as "module:function", imported only when a model is actually built.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from edgecnn.errors import BadArgumentError, UnknownNameError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


def get_spec(name: str) -> ModelSpec:
    """The spec for `name`; an unknown name raises with close matches."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError("model", name, _REGISTRY) from None


def check_input_size(spec: ModelSpec, size: tuple[int, int]) -> tuple[int, int]:
    """`size` as (H, W) when `spec`'s model accepts it, else a one-line error naming what works."""
    h, w = size
    if spec.fixed_input and tuple(size) != tuple(spec.input_size):
        raise BadArgumentError(
            f"{spec.name} has a fixed-size classifier: only --input-size {spec.input_size[0]} "
            f"{spec.input_size[1]} works, not {h} {w}"
        )
    if min(h, w) < spec.min_input_size:
        raise BadArgumentError(
            f"input size {h}x{w} is too small for {spec.name} (at least "
            f"{spec.min_input_size}x{spec.min_input_size})"
        )
    return h, w
