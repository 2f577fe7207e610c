"""Which int8 layers move the model's output most: the order in which an int8 student that fails its
check against PyTorch gives layers back to fp32 (NNCF's accuracy control and TensorRT's "keep
sensitive layers in higher precision" do the same).

A plan scores each layer's int8 error at that layer's output; what a deployment sees is the logits,
after every later layer has amplified or damped it: layers that each lose little can together move
the logits a lot. So each int8 layer is
fake-quantized alone in the whole model, and ranked by how far the logits move.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def int8_sensitivity(
    model, layers: Iterable[str], batches: Iterable[np.ndarray], activations: str = "s8"
) -> list[tuple[str, float]]:
    """(layer, relative L2 change of the logits when that layer alone computes as its int8 Q/DQ
    graph does), most harmful first; `activations` an INT8_ACTIVATIONS scheme name."""
    import torch

    from edgecnn.plan.scores import fake_quant

    was_training = model.training
    model.eval()
    xs = [torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for x in batches]
    scores = []
    try:
        with torch.no_grad():
            refs = [model(x) for x in xs]
            norm = sum(float(r.double().pow(2).sum()) for r in refs)
            for name in layers:
                original = model.get_submodule(name)
                model.set_submodule(name, fake_quant(original, activations))
                try:
                    moved = sum(
                        float((model(x) - r).double().pow(2).sum()) for x, r in zip(xs, refs, strict=True)
                    )
                finally:
                    model.set_submodule(name, original)
                scores.append((name, math.sqrt(moved / norm) if norm > 0 else 0.0))
    finally:
        model.train(was_training)
    return sorted(scores, key=lambda s: -s[1])
