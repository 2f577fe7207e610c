"""An int8 export that keeps its accuracy: exported as planned, and where it fails its check against
PyTorch on real images, again with its most harmful int8 layers in fp32 (as NNCF's
`quantize_with_accuracy_control` gives layers back, here ranked by how far each moves the logits)."""

from __future__ import annotations

import dataclasses
import logging

log = logging.getLogger(__name__)


def failed_on_images(target) -> bool:
    """Whether an export failed only its check on real images (what more fp32 layers can fix)."""
    failed = [p for p in target.parity if not p.passed]
    return target.status == "verify failed" and all(p.inputs.startswith("images") for p in failed)


def quantize_with_accuracy_control(
    model, options, int8_layers: list[str], batches, activations: str, *, on_progress=None
):
    """Export `model` (a `Model`) with int8 `options`; where the artifact fails its check against
    PyTorch on real images, export it again with its most harmful layers of `int8_layers` in fp32
    (ranked on `batches` under the `activations` scheme), 1, 2, 4, ... of them, until it passes.

    Returns (the ExportTarget, the layers given back to fp32; empty when none helped or none was
    needed). The caller's end-to-end timing then measures what they cost."""
    from edgecnn.export import export
    from edgecnn.plan.sensitivity import int8_sensitivity

    progress = on_progress or (lambda stage, done, total: None)
    (target,) = export(model, options).targets
    if not failed_on_images(target):
        return target, []
    progress("ranking the int8 layers by how far they move the logits", 0, 1)
    ranked = [name for name, _ in int8_sensitivity(model.module, int8_layers, batches, activations)]
    k = 1
    while k <= len(ranked):
        log.warning(
            "the int8 student failed its check against PyTorch (%s): exporting it again with the %d "
            "int8 layers that move its logits most in fp32",
            target.error,
            k,
        )
        progress(f"exporting the student with {k} more layers in fp32", 0, 1)
        back = ranked[:k]
        fp32 = (*options.int8_fp32_layers, *back)
        (target,) = export(model, dataclasses.replace(options, int8_fp32_layers=fp32)).targets
        if not failed_on_images(target):
            return target, back
        k = len(ranked) if k < len(ranked) < 2 * k else 2 * k
    return target, []
