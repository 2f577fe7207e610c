"""AlexNet as published (Krizhevsky et al. 2012) and ZFNet (Zeiler & Fergus 2014).

Both are written as one tower (no two-GPU grouping), the layout tabulated in course material:
alexnet2012 maps 227x227x3 -> 55x55x96 -> 27x27x96 -> 27x27x256 -> 13x13x256 -> 13x13x384 ->
13x13x384 -> 13x13x256 -> 6x6x256 -> 4096 -> 4096 -> 1000. ZFNet changes conv1 to 7x7 stride 2,
uses stride 2 in conv2 and widens conv3-5 to 512-1024-512 (the paper's best single model).
"""

from __future__ import annotations

from torch import nn


def _lrn() -> nn.LocalResponseNorm:
    # Paper section 3.3: k=2, n=5, alpha=1e-4, beta=0.75.
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)


class AlexNetLike(nn.Module):
    """Five convs with LRN after the first two, three max-pools and a 4096-4096 classifier."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int,
        conv1: tuple[int, int, int],  # (kernel, stride, padding)
        conv2_stride: int,
        conv2_padding: int,
        widths: tuple[int, int, int, int, int],
        pool_ceil: bool,
        feature_hw: int,
        dropout: float = 0.5,
    ):
        super().__init__()
        c1, c2, c3, c4, c5 = widths
        k1, s1, p1 = conv1
        pool = dict(kernel_size=3, stride=2, ceil_mode=pool_ceil)
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, c1, kernel_size=k1, stride=s1, padding=p1),
            nn.ReLU(inplace=True),
            _lrn(),
            nn.MaxPool2d(**pool),
            nn.Conv2d(c1, c2, kernel_size=5, stride=conv2_stride, padding=conv2_padding),
            nn.ReLU(inplace=True),
            _lrn(),
            nn.MaxPool2d(**pool),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c5 * feature_hw * feature_hw, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def alexnet2012(*, num_classes: int = 1000, in_chans: int = 3) -> AlexNetLike:
    return AlexNetLike(
        num_classes=num_classes,
        in_chans=in_chans,
        conv1=(11, 4, 0),
        conv2_stride=1,
        conv2_padding=2,
        widths=(96, 256, 384, 384, 256),
        pool_ceil=False,
        feature_hw=6,
    )


def zfnet(*, num_classes: int = 1000, in_chans: int = 3) -> AlexNetLike:
    # Paper Fig. 3 on 224x224: 110x110x96 -> pool 55 -> 26x26x256 -> pool 13 -> 13x13 -> pool 6x6x512.
    return AlexNetLike(
        num_classes=num_classes,
        in_chans=in_chans,
        conv1=(7, 2, 1),
        conv2_stride=2,
        conv2_padding=0,
        widths=(96, 256, 512, 1024, 512),
        pool_ceil=True,
        feature_hw=6,
    )
