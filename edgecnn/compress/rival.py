"""The plan or uniform pruning: which student compress ships, decided on the validation images.

A plan is chosen by each candidate's error on calibration images right after the cut; how a cut
recovers in distillation is another matter, and early in distillation does not tell either
(benchmarks/prune_candidates.py). So where the plan may prune, uniform pruning of every group
(residual streams included, which a plan's per-block groups leave alone) at the least ratio that
meets the same request is recovered alike, and the student with the lower loss on the validation
images ships. The test images score both and choose neither.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass, field

from edgecnn.compress.options import CompressOptions
from edgecnn.plan import Plan

log = logging.getLogger(__name__)


@dataclass
class Scored:
    """One recovered student on the validation images: top-1 (%) and mean cross-entropy."""

    top1: float
    loss: float


@dataclass
class StructureChoice:
    """The plan against uniform pruning at the same request, each recovered alike, and which shipped."""

    shipped: str  # "plan" or "uniform"
    ratio: float  # of every group's channels uniform pruning removes
    plan_ms: float  # each structure's whole time when planned (the plan's prediction; uniform's timing)
    uniform_ms: float
    val_images: int
    plan_val: Scored
    uniform_val: Scored
    test_top1: tuple[float, float]  # (plan, uniform) on the test images: reported, never chosen by
    other: Plan | None = field(default=None, repr=False)  # the structure not shipped

    def to_dict(self) -> dict:
        """With the structure not shipped as a plan of its own (`other`), so the report keeps both."""
        d = dataclasses.asdict(dataclasses.replace(self, other=None))
        d["other"] = self.other.to_dict() if self.other is not None else None
        return d


def uniform_rival(folded, plan: Plan, splits, opts: CompressOptions, progress) -> Plan | None:
    """Uniform pruning at the least ratio that meets `plan`'s request (`plan.uniform`), where the plan
    may prune (fp32, on a runtime it prunes for) and there are validation images to choose on."""
    from edgecnn.plan.uniform import uniform_plan
    from edgecnn.runtime import get_backend

    may_prune = "prune" in opts.grid.kinds and not opts.int8 and get_backend(opts.runtime).node_profiler
    if not may_prune or not len(splits.val):
        return None
    return uniform_plan(folded, plan, opts.plan_options(), on_progress=progress)


def recover_best(loaded, plan: Plan, rival: Plan | None, size, splits, batches, opts, progress, *hooks):
    """(the plan shipped, what `recover` returned for it, StructureChoice or None): each of `plan`
    and `rival` recovered alike, the one with the lower validation loss kept."""
    from edgecnn.compress.recovery import recover

    if rival is None:
        return plan, recover(loaded, plan, size, splits, batches, opts, progress, *hooks), None
    from edgecnn.errors import DivergedError

    made, scores = [], []
    for label, candidate in (("the plan", plan), (f"uniform pruning {rival.uniform:.0%}", rival)):
        progress(f"recovering {label}'s student", len(made) + 1, 2)
        try:
            made.append(recover(loaded, candidate, size, splits, batches, opts, progress, *hooks))
        except DivergedError as e:
            if candidate is plan:
                raise
            log.warning("uniform pruning's student diverged (%s): the plan's ships", e)
            return plan, made[0], None
        scores.append(_scored(made[-1][0].model, splits.val))
    uniform = scores[1].loss < scores[0].loss
    choice = StructureChoice(
        "uniform" if uniform else "plan",
        rival.uniform,
        plan.predicted_ms,
        rival.predicted_ms,
        len(splits.val),
        *scores,
        (made[0][1][1], made[1][1][1]),
        other=plan if uniform else rival,
    )
    log.info(
        "plan vs uniform pruning %.0f%%: validation loss %.4f vs %.4f on %d images: ships the %s",
        *(100 * rival.uniform, scores[0].loss, scores[1].loss, len(splits.val), choice.shipped),
    )
    return (rival, made[1], choice) if uniform else (plan, made[0], choice)


def _scored(model, dataset) -> Scored:
    """Top-1 and mean cross-entropy of `model` (in eval mode, on the CPU) over `dataset`."""
    import torch

    from edgecnn.card import logits

    model = copy.deepcopy(model).eval().cpu()
    correct = total = 0
    loss = 0.0
    with torch.inference_mode():
        for x, y in dataset.batches(256):
            out = logits(model(torch.from_numpy(x))).float()
            target = torch.as_tensor(y, dtype=torch.long)
            loss += float(torch.nn.functional.cross_entropy(out, target, reduction="sum"))
            correct += int((out.argmax(1) == target).sum())
            total += len(y)
    return Scored(100.0 * correct / max(1, total), loss / max(1, total))
