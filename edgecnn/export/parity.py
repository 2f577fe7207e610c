"""Run an artifact in its runtime on fixed inputs and compare with PyTorch.

Tolerances depend on precision. Errors are relative to the largest reference logit, because random
-weight ResNets produce logits of 1e2..1e6 where an absolute bound means nothing; max abs is recorded
as well. Top-1 agreement is the share of images whose arg-max matches PyTorch fp32.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    max_rel: float  # max |y - y_ref| / max |y_ref|
    min_agreement: float  # top-1 agreement with PyTorch fp32 on the real check images


TOLERANCES = {
    "fp32": Tolerance(max_rel=1e-4, min_agreement=0.99),
    "fp16": Tolerance(max_rel=2e-2, min_agreement=0.95),
    # int8 is judged mainly by top-1 agreement on real images: a trained ResNet-50 (digits) keeps
    # 0.995-1.0 agreement while its worst logit moves by 33% of the largest one. The error bound only
    # catches broken graphs.
    "int8": Tolerance(max_rel=0.5, min_agreement=0.90),
}


@dataclass
class Parity:
    runtime: str
    inputs: str  # what was compared: "seeded:8" / "digits:test:64"
    images: int
    max_abs: float
    max_rel: float
    top1_agreement: float
    max_rel_allowed: float | None
    min_agreement_allowed: float | None
    passed: bool
    reason: str = ""
    # Distinct arg-max classes in the reference: agreement on inputs that all land in one class
    # (a random-weight model often does that) says little.
    reference_classes: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def run_all(runner, batches: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([runner.run(x).reshape(len(x), -1) for x in batches])


def compare(
    runtime: str,
    inputs: str,
    outputs: np.ndarray,
    reference: np.ndarray,
    tolerance: Tolerance,
    *,
    gate_agreement: bool,
    gate_error: bool = True,
) -> Parity:
    """gate_agreement: only real images gate on top-1 agreement; on seeded noise near-ties between
    logits of a random-weight model make arg-max agreement a coin flip, so it is only reported."""
    diff = np.abs(outputs.astype(np.float64) - reference)
    scale = max(float(np.abs(reference).max()), 1e-12)
    max_abs, max_rel = float(diff.max()), float(diff.max()) / scale
    agree = float((outputs.argmax(1) == reference.argmax(1)).mean())
    reasons = []
    if not np.isfinite(outputs).all():
        reasons.append("non-finite outputs")
    if gate_error and not max_rel <= tolerance.max_rel:
        reasons.append(f"max relative error {max_rel:.2e} > {tolerance.max_rel:g}")
    if gate_agreement and agree < tolerance.min_agreement:
        reasons.append(f"top-1 agreement {agree:.3f} < {tolerance.min_agreement}")
    return Parity(
        runtime,
        inputs,
        len(reference),
        max_abs,
        max_rel,
        agree,
        tolerance.max_rel if gate_error else None,
        tolerance.min_agreement if gate_agreement else None,
        not reasons,
        "; ".join(reasons),
        len(np.unique(reference.argmax(1))),
    )
