"""Xception (Chollet 2017, Fig. 5): entry flow, 8 middle-flow blocks, exit flow; 299x299 input.

Separable convs are depthwise 3x3 + pointwise 1x1 without bias, each followed by BatchNorm, as in the
reference Keras model (22,855,952 trainable parameters).
"""

from __future__ import annotations

from torch import nn


class SeparableConv2d(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=False),
        )


class Block(nn.Module):
    """`reps` x (ReLU, SepConv, BN), an optional 3x3/2 max-pool, and a residual (1x1/2 conv when needed)."""

    def __init__(
        self, cin: int, cout: int, reps: int, *, stride: int, relu_first: bool, grow_first: bool = True
    ):
        super().__init__()
        layers: list[nn.Module] = []
        width = cout if grow_first else cin
        c = cin
        for i in range(reps):
            out = width if i < reps - 1 else cout
            if i > 0 or relu_first:
                layers.append(nn.ReLU(inplace=i > 0))
            layers += [SeparableConv2d(c, out), nn.BatchNorm2d(out)]
            c = out
        if stride != 1:
            layers.append(nn.MaxPool2d(3, stride, padding=1))
        self.body = nn.Sequential(*layers)
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )
        else:
            self.skip = nn.Identity()

    def forward(self, x):
        return self.body(x) + self.skip(x)


class Xception(nn.Module):
    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, middle_blocks: int = 8):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, 32, 3, stride=2, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )
        self.entry = nn.Sequential(
            Block(64, 128, 2, stride=2, relu_first=False),
            Block(128, 256, 2, stride=2, relu_first=True),
            Block(256, 728, 2, stride=2, relu_first=True),
        )
        self.middle = nn.Sequential(
            *[Block(728, 728, 3, stride=1, relu_first=True) for _ in range(middle_blocks)]
        )
        self.exit = nn.Sequential(
            Block(728, 1024, 2, stride=2, relu_first=True, grow_first=False),
            SeparableConv2d(1024, 1536),
            nn.BatchNorm2d(1536),
            nn.ReLU(inplace=True),
            SeparableConv2d(1536, 2048),
            nn.BatchNorm2d(2048),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.exit(self.middle(self.entry(self.stem(x))))
        return self.fc(self.pool(x).flatten(1))


def xception(*, num_classes: int = 1000, in_chans: int = 3) -> Xception:
    return Xception(num_classes=num_classes, in_chans=in_chans)
