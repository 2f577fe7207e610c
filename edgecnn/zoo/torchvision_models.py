"""Builders that defer to torchvision's own definitions, so its pretrained state dicts load unchanged.

Training-only auxiliary heads (GoogLeNet, Inception-v3, FCN) are left out: they never run at
inference and would only inflate params and exported graphs; checkpoints that carry them still load
(the loader drops `aux_prefixes`).
"""

from __future__ import annotations

from torch import nn

# Keyword arguments that make torchvision's builders deterministic and offline.
_EXTRA_KWARGS: dict[str, dict] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
    # Without weights_backbone=None torchvision would download ResNet-50 backbone weights.
    "fcn_resnet50": {"weights_backbone": None, "aux_loss": False},
}


def build(name: str, *, num_classes: int, in_chans: int, **kwargs) -> nn.Module:
    import torchvision

    kw = {**_EXTRA_KWARGS.get(name, {}), **kwargs}
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kw)
    if in_chans != 3:
        replace_first_conv(model, in_chans)
    return model


def replace_first_conv(model: nn.Module, in_chans: int) -> None:
    """Swap the stem conv for one taking `in_chans` channels.

    Existing weights are carried over as timm's `adapt_input_conv` does: summed over RGB for one
    channel, tiled and rescaled otherwise, so pretrained features keep their response scale.
    """
    import torch

    name, conv = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    new = nn.Conv2d(
        in_chans,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    if conv.weight.device.type != "meta":
        with torch.no_grad():
            w = conv.weight
            if in_chans == 1:
                new.weight.copy_(w.sum(dim=1, keepdim=True))
            else:
                reps = -(-in_chans // w.shape[1])
                new.weight.copy_(w.repeat(1, reps, 1, 1)[:, :in_chans] * (w.shape[1] / in_chans))
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
    model.set_submodule(name, new)


def _make(name: str):
    def builder(*, num_classes: int, in_chans: int = 3, **kwargs) -> nn.Module:
        return build(name, num_classes=num_classes, in_chans=in_chans, **kwargs)

    builder.__name__ = name
    builder.__doc__ = f"torchvision's {name}, built without weights (see edgecnn.zoo.weights)."
    return builder


NAMES = (
    "alexnet vgg11 vgg13 vgg16 vgg19 vgg11_bn vgg13_bn vgg16_bn vgg19_bn googlenet inception_v3 "
    "resnet18 resnet34 resnet50 resnet101 resnet152 wide_resnet50_2 resnext50_32x4d densenet121 "
    "mobilenet_v2 mobilenet_v3_small mobilenet_v3_large efficientnet_b0 convnext_tiny fcn_resnet50"
).split()

globals().update({n: _make(n) for n in NAMES})
