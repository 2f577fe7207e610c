"""U-Net (Ronneberger et al. 2015): 4 down / 4 up stages of two 3x3 convs, 2x2 up-convolutions,
crop-and-concatenate skips, a 1x1 classifier.

padding="valid" is the paper (572x572 -> 388x388 output); padding="same" keeps the input size,
which needs an input divisible by 16.
"""

from __future__ import annotations

import torch
from torch import nn

from edgecnn.errors import BadArgumentError


def _double_conv(cin: int, cout: int, pad: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=pad),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=pad),
        nn.ReLU(inplace=True),
    )


def _center_crop(skip: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    dh = (skip.shape[-2] - like.shape[-2]) // 2
    dw = (skip.shape[-1] - like.shape[-1]) // 2
    return skip[..., dh : dh + like.shape[-2], dw : dw + like.shape[-1]]


class UNet(nn.Module):
    def __init__(self, *, num_classes: int = 2, in_chans: int = 1, base: int = 64, padding: str = "valid"):
        super().__init__()
        if padding not in ("valid", "same"):
            raise BadArgumentError(f"unet padding must be 'valid' or 'same', got {padding!r}")
        pad = 1 if padding == "same" else 0
        widths = [base * 2**i for i in range(5)]  # 64 .. 1024
        self.down = nn.ModuleList()
        cin = in_chans
        for w in widths:
            self.down.append(_double_conv(cin, w, pad))
            cin = w
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(w * 2, w, kernel_size=2, stride=2))
            self.up_conv.append(_double_conv(w * 2, w, pad))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, conv in zip(self.up, self.up_conv, strict=True):
            x = up(x)
            x = conv(torch.cat([_center_crop(skips.pop(), x), x], dim=1))
        return self.head(x)


def unet(*, num_classes: int = 2, in_chans: int = 1, padding: str = "valid", base: int = 64) -> UNet:
    return UNet(num_classes=num_classes, in_chans=in_chans, padding=padding, base=base)
