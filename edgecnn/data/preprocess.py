"""Per-model image preprocessing: resize, center crop, channels, mean/std, as the model was trained.

Plain PIL + NumPy, so feeding ONNX Runtime or OpenVINO never needs torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecnn.card import fit_channels


@dataclass(frozen=True)
class Preprocess:
    """Turn a PIL image into a normalised CHW float32 array for one model.

    resize_size: shorter side before the center crop (ImageNet's 256 -> 224); None resizes straight to
    `input_size` (digits, LeNet-5).
    """

    input_size: tuple[int, int]
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize_size: int | None = None

    @classmethod
    def for_model(cls, card, *, input_size=None, in_chans=None, crop: bool = True) -> Preprocess:
        """A `Card`'s preset; another `input_size` keeps the card's resize/crop ratio (`Card.at_size`)."""
        card = card.at_size(input_size or card.input_size)
        chans = in_chans or card.in_chans
        mean, std = fit_channels(card.mean, chans), fit_channels(card.std, chans)
        return cls(card.input_size, chans, mean, std, card.resize_size if crop else None)

    def __call__(self, image) -> np.ndarray:
        from PIL import Image

        image = image.convert("L" if self.in_chans == 1 else "RGB")
        h, w = self.input_size
        if self.resize_size:
            scale = self.resize_size / min(image.size)
            new = (max(w, round(image.size[0] * scale)), max(h, round(image.size[1] * scale)))
            image = image.resize(new, Image.BILINEAR)
            left, top = (image.size[0] - w) // 2, (image.size[1] - h) // 2
            image = image.crop((left, top, left + w, top + h))
        elif image.size != (w, h):
            image = image.resize((w, h), Image.BILINEAR)
        x = np.asarray(image, dtype=np.float32) / 255.0
        x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
        if self.in_chans not in (1, 3):  # an adapted stem: repeat the grey/RGB planes to fill it
            x = np.resize(x, (self.in_chans, h, w))
        mean = np.asarray(self.mean, np.float32)[:, None, None]
        std = np.asarray(self.std, np.float32)[:, None, None]
        return np.ascontiguousarray((x - mean) / std, dtype=np.float32)
