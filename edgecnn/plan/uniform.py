"""The rival a plan with pruning must beat: uniform pruning of every channel group (Torch-Pruning's
`pruning_ratio`, group L2 importance) at the least ratio that meets the same request, timed whole
against the original in the rounds a plan's choice is confirmed in.

Uniform pruning also cuts the residual streams a plan's per-block groups leave alone, and on the
digits benchmark it recovered in distillation better than mixes the calibration scores preferred
(benchmarks/prune_candidates.py), so compress measures the two students before it ships one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from edgecnn.plan.api import LayerChoice, Plan, PlanOptions, latency_table

log = logging.getLogger(__name__)

# Fractions of every group's channels removed, tried for the least that meets the request
RATIOS = tuple(round(0.1 + 0.05 * i, 2) for i in range(13))  # 0.1 .. 0.7
STEPS = math.ceil(math.log2(len(RATIOS) + 1))  # timings a bisection of RATIOS makes at most


def uniform_plan(
    model, plan: Plan, options: PlanOptions, *, on_progress: Callable[[str, int, int], None] | None = None
) -> Plan | None:
    """A Plan that prunes every group of `model` (eval, BN folded: what the runtime runs) by the least
    ratio of RATIOS whose whole time, as a ratio to the original's, meets `plan`'s request; None when
    even the most does not, or the model has no group to prune."""
    import torch

    from edgecnn.plan.context import Reference

    opts = options.validate()
    progress = on_progress or (lambda stage, done, total: None)
    table = latency_table(opts)
    example = torch.zeros(1, *plan.input_shape)
    reference = Reference(
        model, plan.input_shape, table.backend, shipped=True, seconds=opts.check_seconds, **table.setting
    )
    rounds = opts.confirm_rounds
    timed: dict[float, tuple[float, dict]] = {}
    try:
        lo, hi = 0, len(RATIOS) - 1  # the ratios run faster as they grow: a bisection finds the least
        while lo <= hi:
            mid = (lo + hi) // 2
            progress("timing uniform pruning, the plan's rival", len(timed) + 1, STEPS)
            timed[RATIOS[mid]] = _time_uniform(model, RATIOS[mid], example, plan, table, reference, rounds)
            if timed[RATIOS[mid]][0] <= plan.target_ms:
                hi = mid - 1
            else:
                lo = mid + 1
    except _NothingToPrune:
        return None
    finally:
        reference.close()
        table.save()
    meeting = [r for r, (ms, _) in timed.items() if ms <= plan.target_ms]
    if not meeting:
        log.info("uniform pruning meets the request at no ratio up to %.2f", RATIOS[-1])
        return None
    ratio = min(meeting)
    ms, groups = timed[ratio]
    log.info("uniform pruning of %.0f%% of the channels: %.2fx", 100 * ratio, plan.original_ms / ms)
    layers = [
        LayerChoice(root, f"prune {kept}/{channels}", "prune", {root: kept}, None, None, None, 0, 0)
        for root, (channels, kept) in groups.items()
    ]
    return Plan(
        *(plan.runtime, plan.device, plan.threads, plan.batch, plan.input_shape),
        plan.original_ms,
        plan.target_ms,
        ms,
        layers,
        plan.calibration_images,
        table.misses,
        table.hits,
        latencies_retimed=table.stale,
        uniform=ratio,
    )


class _NothingToPrune(Exception):
    pass


def _time_uniform(model, ratio, example, plan, table, reference, rounds) -> tuple[float, dict]:
    """(ms of `model` uniformly pruned by `ratio`, as its time over the original's times the plan's
    original ms; each pruned group's (channels, kept)), timed as shipped, cached in `table`."""
    from edgecnn.errors import BadArgumentError
    from edgecnn.plan.context import ProbeTimes, profile_probe
    from edgecnn.transforms.prune import prune_uniform

    try:
        pruned, report = prune_uniform(model, ratio, example)
    except BadArgumentError as e:  # no group can be pruned
        log.info("no uniform pruning rival: %s", e)
        raise _NothingToPrune from None
    key = table.key(pruned, plan.input_shape) + ":uniform-shipped"
    entry = table.get(key)
    if entry is None:
        entry = table.measured(
            key,
            lambda: profile_probe(
                pruned.eval(),
                [],
                plan.input_shape,
                table.backend,
                reference=reference,
                profile=False,
                rounds=rounds,
                **table.setting,
            ).to_entry(),
        )
    return ProbeTimes.from_entry(entry).ratio * plan.original_ms, dict(report.groups)
