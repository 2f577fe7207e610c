"""A network of your own, for `edgecnn ... examples/mynet.py:build`: conv-BN-ReLU stacks with
residual additions, as most hand-written CNNs are. The builder takes `num_classes` so `train` can
give it your data's classes."""

from torch import nn


class Residual(nn.Module):
    """Two 3x3 conv-BN layers with a skip connection."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(x + self.bn2(self.conv2(y)))


def stage(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
        Residual(c_out),
    )


def build(num_classes: int = 10, width: int = 64, in_chans: int = 3) -> nn.Module:
    return nn.Sequential(
        stage(in_chans, width, 1),
        stage(width, 2 * width, 2),
        stage(2 * width, 4 * width, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, num_classes),
    )
