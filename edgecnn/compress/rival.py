"""Which structure compress ships, decided on the validation images: the plan, the plan without
pruning, or uniform pruning, each recovered alike.

A plan is chosen by each candidate's error on calibration images right after the cut; how a cut
recovers in distillation is another matter, and early in distillation does not tell either
(benchmarks/prune_candidates.py). So where the plan may prune, the structures a user would
otherwise get at the same request are recovered beside it: the plan made without pruning (swaps
only; where the plan prunes) and uniform pruning of every group (residual streams included, which
a plan's per-block groups leave alone) at the least ratio that meets the request. The student with
the lowest loss on the validation images ships; the test images score each and choose none.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass, field

from edgecnn.compress.options import CompressOptions
from edgecnn.plan import Plan

log = logging.getLogger(__name__)

# contender kind -> how the output names it
LABELS = {
    "plan": lambda plan: "the plan",
    "no prune": lambda plan: "the plan without pruning",
    "uniform": lambda plan: f"uniform pruning {plan.uniform:.0%}",
}


@dataclass
class Scored:
    """One recovered student on the validation images: top-1 (%) and mean cross-entropy."""

    top1: float
    loss: float


@dataclass
class Contender:
    """One structure recovered: its plan, its student's validation figures and test top-1."""

    kind: str  # a key of LABELS
    plan: Plan = field(repr=False)
    val: Scored
    test_top1: float  # reported, never chosen by

    @property
    def label(self) -> str:
        return LABELS[self.kind](self.plan)

    def to_dict(self) -> dict:
        val = dataclasses.asdict(self.val)
        head = {"kind": self.kind, "label": self.label, "planned_ms": self.plan.predicted_ms}
        return {**head, "val": val, "test_top1": self.test_top1, "plan": self.plan.to_dict()}


@dataclass
class StructureChoice:
    """The structures recovered alike at one request, in the order recovered (the plan first), and
    which shipped: the lowest validation loss."""

    shipped: str  # the kind of the contender shipped
    val_images: int
    contenders: list[Contender]

    def of(self, kind: str) -> Contender | None:
        return next((c for c in self.contenders if c.kind == kind), None)

    def to_dict(self) -> dict:
        contenders = [c.to_dict() for c in self.contenders]
        return {"shipped": self.shipped, "val_images": self.val_images, "contenders": contenders}


def rivals(folded, plan: Plan, batches, splits, opts: CompressOptions, progress) -> list[tuple[str, Plan]]:
    """[(kind, plan)] recovered beside `plan` where asked (`opts.rivals`), it may prune (fp32, on a
    runtime it prunes for) and there are validation images to choose on: the plan without pruning
    (where `plan` prunes) and uniform pruning, each where it meets the same request."""
    from edgecnn.plan.uniform import uniform_plan
    from edgecnn.runtime import get_backend

    may_prune = "prune" in opts.grid.kinds and not opts.int8 and get_backend(opts.runtime).node_profiler
    if not opts.rivals or not may_prune or not len(splits.val):
        return []
    found = [("no prune", _without_pruning(folded, plan, batches, opts, progress) if plan.prunes() else None)]
    found.append(("uniform", uniform_plan(folded, plan, opts.plan_options(), on_progress=progress)))
    return [(kind, p) for kind, p in found if p is not None]


def _without_pruning(folded, plan: Plan, batches, opts: CompressOptions, progress) -> Plan | None:
    """The plan made again with every candidate kind but pruning (its latencies mostly cached), where
    it meets the request; None where no kind is left or it does not."""
    from edgecnn.errors import BadArgumentError, OutOfReachError
    from edgecnn.plan import make_plan

    kinds = tuple(k for k in opts.grid.kinds if k != "prune")
    if not kinds:
        return None
    options = dataclasses.replace(opts, grid=opts.grid.with_candidates(kinds)).plan_options()
    try:
        swaps = make_plan(
            folded,
            plan.input_shape,
            batches,
            options,
            on_progress=lambda stage, done, total: progress(f"{stage} (without pruning)", done, total),
        )
    except OutOfReachError as e:
        log.info("the plan without pruning is out of reach (%.2fx at best): not recovered", e.best_speedup)
        return None
    except BadArgumentError as e:  # e.g. no layer the swaps may take among those --include selects
        log.info("no plan without pruning: %s", e)
        return None
    if swaps.predicted_ms > swaps.target_ms:
        log.info(
            "the plan without pruning misses the request (%.2fx): not recovered", swaps.predicted_speedup
        )
        return None
    return swaps


def recover_best(loaded, plan: Plan, others, size, splits, batches, opts, progress, *hooks):
    """(the plan shipped, what `recover` returned for it, StructureChoice or None): `plan` and each
    of `others` ([(kind, plan)], from `rivals`) recovered alike, the lowest validation loss kept."""
    from edgecnn.compress.recovery import recover
    from edgecnn.errors import DivergedError

    if not others:
        return plan, recover(loaded, plan, size, splits, batches, opts, progress, *hooks), None
    entries = [("plan", plan), *others]
    made, contenders = [], []
    for i, (kind, candidate) in enumerate(entries):
        label = LABELS[kind](candidate)
        progress(f"recovering {label}'s student", i + 1, len(entries))
        try:
            recovered = recover(loaded, candidate, size, splits, batches, opts, progress, *hooks)
        except DivergedError as e:
            if candidate is plan:
                raise
            log.warning("%s's student diverged (%s): left out", label, e)
            continue
        made.append(recovered)
        contenders.append(
            Contender(kind, candidate, _scored(recovered[0].model, splits.val), recovered[1][1])
        )
    if len(contenders) == 1:
        return plan, made[0], None
    best = min(range(len(contenders)), key=lambda i: contenders[i].val.loss)
    choice = StructureChoice(contenders[best].kind, len(splits.val), contenders)
    log.info(
        "validation loss on %d images: %s: ships %s",
        len(splits.val),
        ", ".join(f"{c.label} {c.val.loss:.4f}" for c in contenders),
        contenders[best].label,
    )
    return contenders[best].plan, made[best], choice


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
