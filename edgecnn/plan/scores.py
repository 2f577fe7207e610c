"""Error scores from data: how far each candidate moves its layer's output on real images.

The model runs once over the calibration batches; a hook on every slot's layer feeds the layer's
real input to each candidate block and accumulates ||y_candidate - y||^2 and ||y||^2, so nothing
but two numbers per candidate is kept in memory. A candidate's score is the relative L2 error.

An int8 candidate runs fake-quantized the way the Q/DQ graph computes it: weights per output channel
symmetric int8, each conv / linear input per tensor in the runtime's activation scheme (ranges from
the batch itself, as MinMax calibration would see them), so its score holds both the structure's
error and the quantization's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np


def fake_quant(block, activations: str = "s8"):
    """A copy of `block` computing as an int8 Q/DQ graph does (weights and every conv / linear input
    quantize-dequantized; `activations` an INT8_ACTIVATIONS scheme name)."""
    import copy

    import torch

    from edgecnn.runtime import get_int8_scheme

    symmetric = get_int8_scheme(activations).symmetric

    def quant_input(module, args):
        x = args[0]
        if symmetric:
            scale = x.abs().amax().clamp_min(1e-12) / 127
            return ((x / scale).round().clamp(-128, 127) * scale, *args[1:])
        lo, hi = x.amin().clamp(max=0), x.amax().clamp(min=0)
        scale = ((hi - lo) / 255).clamp_min(1e-12)
        zero = (-lo / scale).round()
        return (((x / scale).round() + zero).clamp(0, 255) - zero) * scale, *args[1:]

    q = copy.deepcopy(block).eval()
    for m in q.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            w = m.weight.data
            scale = w.abs().flatten(1).amax(1).clamp_min(1e-12).view(-1, *[1] * (w.dim() - 1)) / 127
            m.weight.data = (w / scale).round().clamp(-127, 127) * scale
            m.register_forward_pre_hook(quant_input)
    return q


def score(
    slots,
    model,
    batches: Iterable[np.ndarray],
    *,
    on_batch: Callable[[int], None] | None = None,
    activations: str = "s8",
) -> int:
    """Fill `error` of every candidate of every slot (int8 ones fake-quantized in `activations`);
    returns how many images were used."""
    import torch

    from edgecnn.runtime import is_baseline

    sq = {id(c): 0.0 for s in slots for c in s.candidates}
    norm = {s.name: 0.0 for s in slots}
    runs = {
        id(c): c.block if is_baseline(c.precision) else fake_quant(c.block, activations)
        for s in slots
        for c in s.candidates
    }

    def hook(slot):
        def fn(module, args, out):
            x, ref = args[0], out
            norm[slot.name] += float(ref.double().pow(2).sum())
            for cand in slot.candidates[1:]:
                sq[id(cand)] += float((runs[id(cand)](x) - ref).double().pow(2).sum())

        return fn

    for s in slots:
        for c in s.candidates:
            c.block.eval()
    from edgecnn.analysis import hooked

    seen = 0
    was_training = model.training
    model.eval()
    try:
        with hooked(model, forward={s.name: hook(s) for s in slots}), torch.no_grad():
            for i, x in enumerate(batches):
                model(torch.from_numpy(np.ascontiguousarray(x)))
                seen += len(x)
                if on_batch:
                    on_batch(i + 1)
    finally:
        model.train(was_training)
    if not seen:  # an error score on no image would say every candidate is perfect
        from edgecnn.data import DataError

        raise DataError("no calibration image to score the candidates on")
    for s in slots:
        for c in s.candidates:
            c.error = math.sqrt(sq[id(c)] / norm[s.name]) if norm[s.name] > 0 else 0.0
    return seen
