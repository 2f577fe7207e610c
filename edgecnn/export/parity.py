"""Run an artifact in its runtime on fixed inputs and compare with PyTorch.

Tolerances come from the precision table (runtime.precisions). Errors are relative to the largest
reference logit, because random-weight ResNets produce logits of 1e2..1e6 where an absolute bound
means nothing; max abs is recorded as well. Top-1 agreement is the share of images whose arg-max
matches PyTorch fp32.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgecnn.runtime import Tolerance


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
