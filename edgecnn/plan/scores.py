"""Error scores from data: how far each candidate moves its layer's output on real images.

The model runs once over the calibration batches; a hook on every slot's layer feeds the layer's
real input to each candidate block and accumulates ||y_candidate - y||^2 and ||y||^2, so nothing
but two numbers per candidate is kept in memory. A candidate's score is the relative L2 error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np


def score(
    slots, model, batches: Iterable[np.ndarray], *, on_batch: Callable[[int], None] | None = None
) -> int:
    """Fill `error` of every candidate of every slot; returns how many images were used."""
    import torch

    modules = dict(model.named_modules())
    sq = {id(c): 0.0 for s in slots for c in s.candidates}
    norm = {s.name: 0.0 for s in slots}

    def hook(slot):
        def fn(module, args, out):
            x, ref = args[0], out
            norm[slot.name] += float(ref.double().pow(2).sum())
            for cand in slot.candidates[1:]:
                sq[id(cand)] += float((cand.block(x) - ref).double().pow(2).sum())

        return fn

    for s in slots:
        for c in s.candidates:
            c.block.eval()
    handles = [modules[s.name].register_forward_hook(hook(s)) for s in slots]
    seen = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i, x in enumerate(batches):
                model(torch.from_numpy(np.ascontiguousarray(x)))
                seen += len(x)
                if on_batch:
                    on_batch(i + 1)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for s in slots:
        for c in s.candidates:
            c.error = math.sqrt(sq[id(c)] / norm[s.name]) if norm[s.name] > 0 else 0.0
    return seen
