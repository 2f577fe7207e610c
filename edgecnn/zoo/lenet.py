"""LeNet-5 (LeCun et al. 1998): 32x32 input, C1 6@5x5, S2, C3 16@5x5, S4, C5 120, F6 84, output.

Subsampling layers are average pools and activations tanh, as in the paper. C3 is fully connected
to S2 (2,416 weights instead of the paper's 1,516 sparse table), as in every modern re-implementation.
"""

from __future__ import annotations

from torch import nn


class LeNet5(nn.Module):
    def __init__(self, *, num_classes: int = 10, in_chans: int = 1):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 6, kernel_size=5),
            nn.Tanh(),
            nn.AvgPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.Tanh(),
            nn.AvgPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.Tanh(),
            nn.Linear(120, 84),
            nn.Tanh(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def lenet5(*, num_classes: int = 10, in_chans: int = 1) -> LeNet5:
    return LeNet5(num_classes=num_classes, in_chans=in_chans)
