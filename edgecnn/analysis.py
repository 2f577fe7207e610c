"""Per-layer shapes, parameters, MACs and activation sizes of a model (the `inspect` table).

One forward pass with hooks on every leaf module (and on any module that owns parameters directly).
It runs on the `meta` device when the model lives there, so even VGG-19 is analysed without memory.

Units: MACs are multiply-accumulates for one image (FLOPs = 2 x MACs), counted for convolutions and
linear layers, the same convention as torchvision's published GFLOPS figures.

Activation count: the input plus the output of every layer that creates new values. Layers whose
output has as many elements as their input and that compute no MACs (ReLU and other activations,
BatchNorm, dropout, flatten, identity, LRN, size-preserving pooling) are listed but not counted: they
run in place, are views, or fold into the preceding convolution at deployment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class LayerStats:
    name: str
    type: str
    output_shape: tuple[int, ...]
    weight_params: int  # every directly owned parameter except the bias
    bias_params: int
    macs: int
    activations: int  # elements of the output, per image
    counted: bool  # included in the activation total (see module docstring)

    @property
    def params(self) -> int:
        return self.weight_params + self.bias_params


@dataclass(frozen=True)
class ModelStats:
    model: str
    input_shape: tuple[int, ...]
    params: int
    macs: int
    activations: int
    layers: list[LayerStats] = field(default_factory=list)

    @property
    def activation_bytes_fp32(self) -> int:
        return self.activations * 4

    def to_dict(self) -> dict:
        d = asdict(self)
        d["activation_bytes_fp32"] = self.activation_bytes_fp32
        d["units"] = {"macs": "multiply-accumulates per image (FLOPs = 2 x MACs)", "activations": "elements"}
        return d


def _first_tensor(out):
    import torch

    if torch.is_tensor(out):
        return out
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        for o in out:
            t = _first_tensor(o)
            if t is not None:
                return t
    return None


def _macs(module, inp, out) -> int:
    """Multiply-accumulates for one call of `module`, per image."""
    from torch import nn

    batch = out.shape[0] if out.dim() > 1 else 1
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        k = math.prod(module.kernel_size)
        return out.numel() // batch * (module.in_channels // module.groups) * k
    if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        k = math.prod(module.kernel_size)
        return inp.numel() // batch * (module.out_channels // module.groups) * k
    if isinstance(module, nn.Linear):
        return out.numel() // batch * module.in_features
    return 0


@contextlib.contextmanager
def hooked(model, *, forward: dict | None = None, pre: dict | None = None):
    """Forward hooks (`forward`: {submodule or its name: fn(module, args, out)}) and forward-pre
    hooks (`pre`: {submodule or name: fn(module, args)}) on `model` for the block, always removed:
    the one way edgecnn watches a forward pass (analysis, BN folding, swaps, error scores, refit,
    feature distillation). A hook must return None (a value would replace the output)."""
    modules = dict(model.named_modules())

    def at(key):
        return modules[key] if isinstance(key, str) else key

    handles = [at(k).register_forward_hook(fn) for k, fn in (forward or {}).items()]
    handles += [at(k).register_forward_pre_hook(fn) for k, fn in (pre or {}).items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


class _Collector:
    """Forward hooks that record each layer's output shape, parameters (a reused module's once),
    MACs and activations."""

    def __init__(self):
        self.layers: list[LayerStats] = []
        self.seen: set[int] = set()

    def hook(self, mod_name: str):
        def fn(module, args, out):
            inp, out_t = _first_tensor(args), _first_tensor(out)
            if out_t is None:
                return
            weight = bias = 0
            if id(module) not in self.seen:  # parameters of a reused module are counted once
                self.seen.add(id(module))
                for pname, p in module.named_parameters(recurse=False):
                    if pname == "bias":
                        bias += p.numel()
                    else:
                        weight += p.numel()
            macs = _macs(module, inp, out_t) if inp is not None else 0
            acts = out_t.numel() // out_t.shape[0] if out_t.dim() > 1 else out_t.numel()
            same_size = inp is not None and inp.numel() == out_t.numel()
            self.layers.append(
                LayerStats(
                    name=mod_name,
                    type=type(module).__name__,
                    output_shape=tuple(out_t.shape),
                    weight_params=weight,
                    bias_params=bias,
                    macs=macs,
                    activations=acts,
                    counted=bool(macs) or not same_size,
                )
            )

        return fn


def analyze(model, input_size: tuple[int, int], *, in_chans: int = 3, name: str = "model") -> ModelStats:
    """Run one image of `input_size` (H, W) through `model` and collect per-layer statistics."""
    import torch

    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = torch.zeros(1, in_chans, *input_size, device=device, dtype=dtype)

    collect = _Collector()
    watched = {
        n: collect.hook(n)
        for n, m in model.named_modules()
        if n and (not any(m.children()) or next(m.parameters(recurse=False), None) is not None)
    }
    was_training = model.training
    model.eval()
    try:
        with hooked(model, forward=watched), torch.no_grad():
            model(x)
    finally:
        model.train(was_training)

    layers = collect.layers
    params = sum(p.numel() for p in model.parameters())
    macs = sum(layer.macs for layer in layers)
    acts = x[0].numel() + sum(layer.activations for layer in layers if layer.counted)
    return ModelStats(name, tuple(x.shape), params, macs, acts, layers)


def peak_bytes(stats: ModelStats, batch: int) -> int:
    """A lower estimate of one forward pass's peak memory at `batch` (fp32): the input and the two
    largest layer outputs, which a layer holds at once, plus the weights."""
    largest = sorted((layer.activations for layer in stats.layers), reverse=True)[:2]
    inputs = math.prod(stats.input_shape[1:])
    return 4 * (batch * (inputs + sum(largest)) + stats.params)


def check_batch_fits(stats: ModelStats, batch: int, advice: str) -> None:
    """A one-line error before any allocation when a forward pass at `batch` needs more memory than
    this machine has (`peak_bytes`)."""
    from edgecnn.errors import check_fits_memory

    h, w = stats.input_shape[-2:]
    check_fits_memory(peak_bytes(stats, batch), f"{stats.model} at {h}x{w}, batch {batch},", advice)


def format_shape(shape: tuple[int, ...]) -> str:
    """NCHW as the course tables write it (HxWxC); other ranks without the batch dimension."""
    if len(shape) == 4:
        return f"{shape[2]}x{shape[3]}x{shape[1]}"
    return "x".join(str(s) for s in shape[1:]) or str(shape[0])


# Every zoo model's table in its default configuration, made by `python -m edgecnn.analysis` and
# checked against a live analysis by the tests: `inspect` answers from it without importing torch
# (torch and torchvision took 7 of `inspect resnet50`'s 7.2 s here).
CATALOG = Path(__file__).parent / "zoo" / "layers.json.gz"


def _from_dict(d: dict) -> ModelStats:
    layers = [LayerStats(**{**x, "output_shape": tuple(x["output_shape"])}) for x in d["layers"]]
    return ModelStats(d["model"], tuple(d["input_shape"]), d["params"], d["macs"], d["activations"], layers)


@functools.cache
def _catalog() -> dict:
    if not CATALOG.is_file():
        return {}
    with gzip.open(CATALOG, "rt") as f:
        return json.load(f)


def catalog_stats(name: str) -> ModelStats | None:
    """The stored table of zoo model `name` in its default configuration, if the catalog has it."""
    d = _catalog().get(name)
    return None if d is None else _from_dict(d)


def write_catalog(names, path: Path = CATALOG) -> Path:
    """Analyse each model in its default configuration (meta device) and store the tables."""
    from edgecnn.artifacts import atomic_output

    tables = {name: inspect_model(name, live=True).to_dict() for name in names}
    with atomic_output(path, force=True) as tmp, gzip.open(tmp, "wt") as f:
        json.dump(tables, f, separators=(",", ":"))
    return path


def onnx_stats(path, input_size=None) -> ModelStats:
    """`ModelStats` of an ONNX file (one edgecnn did not write, too) at batch 1, from its graph."""
    from edgecnn.runtime.graphs import onnx_layers

    shape, params, rows = onnx_layers(path, input_size)
    layers = [LayerStats(*row, math.prod(row[2][1:]) if row[2] else 0, bool(row[3])) for row in rows]
    activations = math.prod(shape[1:]) + sum(x.activations for x in layers if x.counted)
    return ModelStats(Path(path).name, shape, params, sum(x.macs for x in layers), activations, layers)


def inspect_model(
    name,
    *,
    input_size: tuple[int, int] | None = None,
    weights: str | None = None,
    live: bool = False,
    **model_kwargs,
) -> ModelStats:
    """Analyse a `Model` (at its card's size unless `input_size`), or a zoo model (built on the meta
    device unless weights are given; the stored table when nothing differs from the zoo default and
    not `live`). A model file is loaded first (`edgecnn.transforms.load_source`)."""
    from edgecnn.card import Model
    from edgecnn.errors import BadArgumentError
    from edgecnn.zoo import card_for, load_model

    if str(name).endswith(".onnx"):  # a graph, not a module: ONNX shape inference
        return onnx_stats(name, input_size)
    if isinstance(name, Model):
        shown = Path(name.path).name if name.path else name.card.name
        size = tuple(input_size or name.card.input_size)
        return analyze(name.module, size, in_chans=name.in_chans, name=shown)
    from edgecnn.zoo.external import kind_of

    card = card_for(name)
    default = weights is None and not any(v is not None for v in model_kwargs.values())
    if (
        default
        and not live
        and not kind_of(name)
        and (input_size is None or tuple(input_size) == card.input_size)
    ):
        stats = catalog_stats(card.name)
        if stats is not None:
            return dataclasses.replace(stats, model=name)
    loaded = load_model(name, weights=weights, device=None if weights else "meta", **model_kwargs)
    card = loaded.card
    size = tuple(input_size) if input_size else card.input_size
    if len(size) != 2 or min(size) < 1:
        raise BadArgumentError(f"input size must be two positive integers H W, got {size}")
    try:
        return analyze(loaded.module, size, in_chans=loaded.in_chans, name=name)
    except RuntimeError as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        need = (
            f"it needs exactly {card.input_size[0]}x{card.input_size[1]}"
            if card.fixed_input
            else f"its smallest input is about {card.min_input_size}x{card.min_input_size}"
        )
        raise BadArgumentError(f"input {size[0]}x{size[1]} does not fit {name} ({need}): {why}") from None


if __name__ == "__main__":  # python -m edgecnn.analysis: rebuild the catalog after a zoo change
    from edgecnn.zoo import list_models

    print(write_catalog(list_models("*")))
