"""SE-ResNet-50 (Hu et al. 2018): torchvision's ResNet-50 with a squeeze-and-excitation unit
(reduction 16) on the residual branch of every bottleneck, before the identity addition."""

from __future__ import annotations

from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet
from torchvision.ops import SqueezeExcitation


class SEBottleneck(Bottleneck):
    def __init__(self, *args, reduction: int = 16, **kwargs):
        super().__init__(*args, **kwargs)
        channels = self.bn3.num_features
        self.se = SqueezeExcitation(channels, channels // reduction)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))
        return self.relu(out + identity)


def se_resnet50(*, num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    model = ResNet(SEBottleneck, [3, 4, 6, 3], num_classes=num_classes)
    if in_chans != 3:
        model.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model
