"""Fold every BatchNorm whose input is the output of a Conv2d (or Linear) into that layer.

Pairs are found by running the model once and matching tensors: a BN folds when the very tensor it
receives was produced by a conv/linear call. That covers Sequential stacks, torchvision's
Conv-BN-Act blocks and `self.bn1(self.conv1(x))` inside residual blocks alike, without tracing.
"""

from __future__ import annotations

import copy
import logging

from edgecnn.errors import BadArgumentError
from edgecnn.transforms.base import TransformReport

log = logging.getLogger(__name__)

# Subclasses of a BN that compute more after the normalisation, by class name: the modules that stay
# in its place once the normalisation folds (timm's BatchNormAct2d: drop, then its activation).
BN_RESIDUE = {"BatchNormAct2d": ("drop", "act"), "SyncBatchNormAct": ("drop", "act")}
# Conv subclasses whose forward uses the weight and bias as they are (timm's Conv2dSame only pads the
# input first), so a BN folds into them; others (StdConv2d standardises its weight) keep their BN.
PLAIN_WEIGHT_CONVS = ("Conv2dSame",)


def _producers(model, example):
    """Run `example`; return {bn_name: producer} where producer is (name, module) or a reason string."""
    import torch
    from torch import nn

    outputs: dict[int, tuple[str, object, object]] = {}  # id(tensor) -> (name, module, tensor)
    calls: dict[str, int] = {}
    found: dict[str, object] = {}
    bn_types = (nn.BatchNorm1d, nn.BatchNorm2d)

    def pre(name):
        def fn(module, args):
            calls[name] = calls.get(name, 0) + 1
            x = args[0]
            hit = outputs.get(id(x))
            if hit is not None and hit[2] is x:
                found[name] = (hit[0], hit[1])
            else:
                found[name] = (
                    "its input is not the output of a conv/linear layer (e.g. it follows an add or concat)"
                )

        return fn

    def post(name):
        def fn(module, args, out):
            calls[name] = calls.get(name, 0) + 1
            if torch.is_tensor(out):
                outputs[id(out)] = (name, module, out)

        return fn

    from edgecnn.analysis import hooked

    bns = {n: pre(n) for n, m in model.named_modules() if isinstance(m, bn_types)}
    leaves = {
        n: post(n) for n, m in model.named_modules() if not isinstance(m, bn_types) and not any(m.children())
    }
    with hooked(model, forward=leaves, pre=bns), torch.no_grad():
        model(example)
    return {
        name: _verdict(name, m, found.get(name), calls)
        for name, m in model.named_modules()
        if isinstance(m, bn_types)
    }


def _verdict(bn_name: str, bn, prod, calls: dict[str, int]):
    """(name, layer) when `bn` can fold into the layer `prod` that feeds it, else why not."""
    from torch import nn

    if prod is None:
        return "not used in the forward pass"
    if isinstance(prod, str):
        return prod
    name, layer = prod
    if not isinstance(layer, (nn.Conv2d, nn.Linear)):
        return f"it follows {type(layer).__name__} '{name}', not a conv/linear layer"
    if type(layer) not in (nn.Conv2d, nn.Linear) and type(layer).__name__ not in PLAIN_WEIGHT_CONVS:
        return f"it follows {type(layer).__name__} '{name}', whose forward may change its weight"
    residue = _residue(bn)
    if isinstance(residue, str):
        return residue
    if calls.get(bn_name, 0) > 1 or calls.get(name, 0) > 1:
        return "the BN or its conv is called more than once"
    if not bn.track_running_stats or bn.running_mean is None:
        return "it has no running statistics (track_running_stats=False)"
    if isinstance(layer, nn.Conv2d) and bn.num_features != layer.out_channels:
        return "channel count differs from the conv's"
    return prod


def _residue(bn):
    """What stays in a BN's place once its normalisation folds: Identity, the activation of a BN
    subclass that has one (`BN_RESIDUE`), or why a subclass cannot fold (what it adds is unknown)."""
    from torch import nn

    if type(bn) in (nn.BatchNorm1d, nn.BatchNorm2d):
        return nn.Identity()
    parts = BN_RESIDUE.get(type(bn).__name__)
    if parts is None or not all(isinstance(getattr(bn, p, None), nn.Module) for p in parts):
        return f"{type(bn).__name__} computes more than a BatchNorm; edgecnn does not know what, so keeps it"
    return nn.Sequential(*(getattr(bn, p) for p in parts))


def _fold_into(layer, bn) -> None:
    import torch
    from torch import nn

    with torch.no_grad():
        scale = (
            bn.weight / torch.sqrt(bn.running_var + bn.eps)
            if bn.affine
            else torch.rsqrt(bn.running_var + bn.eps)
        )
        shift = bn.bias if bn.affine else torch.zeros_like(scale)
        shape = (-1,) + (1,) * (layer.weight.dim() - 1)
        layer.weight.mul_(scale.reshape(shape).to(layer.weight.dtype))
        bias = layer.bias if layer.bias is not None else torch.zeros_like(scale)
        new_bias = (bias - bn.running_mean) * scale + shift
        if layer.bias is None:
            layer.bias = nn.Parameter(new_bias.to(layer.weight.dtype))
        else:
            layer.bias.copy_(new_bias)


def fold_bn(model, *, example) -> tuple[object, TransformReport]:
    """Return (folded copy, report). `example` is an input batch used to find conv -> BN pairs."""
    if model.training:
        raise BadArgumentError(
            "fold_bn needs an eval-mode model (BatchNorm uses batch statistics in training); "
            "call model.eval() first"
        )
    new = copy.deepcopy(model)
    report = TransformReport("fold_bn")
    pairs = []
    for bn_name, prod in _producers(new, example).items():
        if isinstance(prod, str):
            report.skipped.append((bn_name, prod))
        else:
            pairs.append((prod[0], bn_name))
    replay(new, {"pairs": pairs}, fill=True)
    report.recipe = {"pairs": [list(p) for p in pairs]}
    log.info("folded %d BatchNorm layers, left %d", len(pairs), len(report.skipped))
    return new, report


def replay(model, recipe: dict, *, fill: bool = False) -> None:
    """Replace each recorded BN by Identity; with fill, fold its statistics into the layer first.

    Without fill (reloading a converted model) only the structure changes: the conv gains a bias
    parameter for the state dict to fill.
    """
    import torch
    from torch import nn

    for conv_name, bn_name in recipe["pairs"]:
        layer = model.get_submodule(conv_name)
        bn = model.get_submodule(bn_name)
        if fill:
            _fold_into(layer, bn)
        elif layer.bias is None:
            layer.bias = nn.Parameter(
                torch.zeros(layer.weight.shape[0], dtype=layer.weight.dtype, device=layer.weight.device)
            )
        model.set_submodule(bn_name, _residue(bn))
