"""Least-squares refit of a swapped block's last factor on real activations.

A truncated decomposition is the best approximation of the *weights*; what matters is the layer's
*output* on real inputs, which live in a small subspace. Every swap ends in a 1x1 conv or a Linear
(separable's pointwise, bottleneck's and lowrank's expansion), so with the block's inner features Z
and the original layer's outputs Y on calibration images, min ||Z W + b - Y||^2 has a closed form.
Layers are refit in model order, each on the inputs the student itself produces there and the
teacher's outputs at the same layer, so a refit also absorbs the error of the swaps before it.
Every fourth batch is held out: it picks the ridge and decides whether a refit is kept at all. Fit
and judged on the same images, a deep layer of a small input (ResNet-50 layer4 at 64x64 sees 2x2
pixels: 256 rows from 64 images for up to 512 unknowns per output) always looks better, and is not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


RIDGES = (1e-4, 1e-2, 1e-1, 1.0)  # tried in turn, as shares of the mean diagonal of Z^T Z
HOLDOUT = 4  # every HOLDOUT-th batch judges the refit instead of fitting it


@dataclass
class RefitReport:
    layer: str
    error_before: float  # relative L2 error of the block's output vs the teacher's, on held-out images
    error_after: float  # the same after the refit (equal to before where it was not kept)


def _rows(t):
    """(N, C, H, W) or (N, C) -> (N*H*W, C) float64 rows."""
    return (t.movedim(1, -1) if t.dim() > 2 else t).reshape(-1, t.shape[1]).double()


def _statistics(student, teacher, name: str, last, batches):
    """Z^T Z, Z^T Y and ||Y||^2 over the batches: Z the last factor's inputs in the student (with a
    ones column when it has a bias), Y the teacher's layer outputs."""
    import torch

    from edgecnn.analysis import hooked

    has_bias = last.bias is not None
    seen: dict = {}
    gram = cross = None
    y_sq = 0.0
    student_hook = hooked(student, pre={last: lambda m, args: seen.__setitem__("z", args[0])})
    teacher_hook = hooked(teacher, forward={name: lambda m, args, out: seen.__setitem__("y", out)})
    with student_hook, teacher_hook, torch.no_grad():
        for x in batches:
            xt = torch.from_numpy(np.ascontiguousarray(x))
            student(xt)
            teacher(xt)
            z, y = _rows(seen["z"]), _rows(seen["y"])
            if has_bias:
                z = torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype)], 1)
            gram = z.T @ z if gram is None else gram + z.T @ z
            cross = z.T @ y if cross is None else cross + z.T @ y
            y_sq += float(y.pow(2).sum())
    return gram, cross, y_sq


def _error(w, gram, cross, y_sq: float) -> float:
    """||Z W - Y|| / ||Y|| from the accumulated statistics."""
    sq = float((w.T @ gram @ w).trace() - 2 * (w.T @ cross).trace()) + y_sq
    return float(np.sqrt(max(0.0, sq) / y_sq)) if y_sq > 0 else 0.0


def _split(batches: list) -> tuple[list, list]:
    """(fit, held out): every HOLDOUT-th batch held out (the last, when there are fewer); a single
    batch is both (nothing to spare)."""
    if len(batches) < 2:
        return batches, batches
    held = set(range(HOLDOUT - 1, len(batches), HOLDOUT)) or {len(batches) - 1}
    return [b for i, b in enumerate(batches) if i not in held], [batches[i] for i in sorted(held)]


def refit(student, teacher, layers, batches, *, ridges=RIDGES) -> list[RefitReport]:
    """Refit the last factor of each swapped block `layers` (names in both models, model order) of
    `student` so its output matches `teacher`'s layer output on `batches` (arrays (N, C, H, W)), in
    place. The ridge is the one of `ridges` with the least error on the held-out batches, and a
    layer is left as it was where no refit lowers that error."""
    import torch

    batches = list(batches)
    if not batches:  # no image to fit on: every layer stays as built
        return []
    fit, held = _split(batches)
    student.eval()
    teacher.eval()
    reports = []
    for name in layers:
        last = list(student.get_submodule(name).modules())[-1]
        has_bias = last.bias is not None
        gram, cross, _ = _statistics(student, teacher, name, last, fit)
        judge = _statistics(student, teacher, name, last, held) if held is not fit else (gram, cross, _)
        w_old = last.weight.detach().reshape(last.weight.shape[0], -1).double().T  # (C, N)
        if has_bias:
            w_old = torch.cat([w_old, last.bias.detach().double()[None]], 0)
        scale = float(gram.diagonal().mean()) * torch.eye(len(gram), dtype=torch.float64)
        solutions = [torch.linalg.solve(gram + ridge * scale, cross) for ridge in ridges]
        errors = [_error(w, *judge) for w in solutions]
        best = int(np.argmin(errors))
        before, after = _error(w_old, *judge), errors[best]
        if after < before:
            w_new = solutions[best]
            rows = len(w_new) - has_bias
            last.weight.data = w_new[:rows].T.reshape(last.weight.shape).to(last.weight.dtype)
            if has_bias:
                last.bias.data = w_new[-1].to(last.bias.dtype)
        reports.append(RefitReport(name, before, min(before, after)))
        log.debug(
            "refit %s: held-out output error %.3f -> %.3f (ridge %g)", name, before, after, ridges[best]
        )
    return reports
