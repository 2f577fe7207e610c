"""The choice: one candidate per layer, least total error under a latency budget.

Multiple-choice knapsack by dynamic programming over latency discretised into `bins` steps of
budget / bins; each candidate's latency is rounded up, so a chosen plan never exceeds the budget
by discretisation. Predicted model latency = measured(original) - sum(kept layers) + sum(chosen):
whatever the layers do not account for (the stem's pooling, additions, the call itself) cancels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgecnn.errors import BadArgumentError, OutOfReachError


@dataclass
class Budget:
    """The layer budget for a target: what the slots may spend so the model meets `target_ms`."""

    original_ms: float  # the whole original model, measured
    layers_ms: float  # sum of the original layers' isolated latencies
    target_ms: float
    # What a measured choice cost as a whole beyond its layers' sum (dispatch between more, smaller
    # nodes; what the profiler leaves out): 0 until the planner times a choice whole.
    overhead_ms: float = 0.0

    @property
    def fixed_ms(self) -> float:
        return self.original_ms - self.layers_ms + self.overhead_ms

    @property
    def slots_ms(self) -> float:
        return self.target_ms - self.fixed_ms

    def predict(self, chosen_ms: float) -> float:
        return self.fixed_ms + chosen_ms


def target_ms(original_ms: float, *, speedup: float | None = None, latency_ms: float | None = None) -> float:
    if (speedup is None) == (latency_ms is None):
        raise BadArgumentError("give one budget: --speedup S or --latency-ms L")
    if speedup is not None:
        if not speedup > 1:
            raise BadArgumentError(f"--speedup must be > 1 (the original runs at 1x), got {speedup}")
        return original_ms / speedup
    if not 0 < latency_ms < original_ms:
        raise BadArgumentError(
            f"--latency-ms must be between 0 and the original's {original_ms:.2f} ms, got {latency_ms}"
        )
    return latency_ms


def choose(slots, budget: Budget, *, bins: int = 4000) -> list[int]:
    """Index of the chosen candidate per slot; a one-line error naming the best reachable speed-up
    when even the fastest candidate everywhere misses the budget (where it just meets it, that)."""
    fastest = sum(min(c.latency_ms for c in s.candidates) for s in slots)
    if fastest > budget.slots_ms:
        best = budget.original_ms / budget.predict(fastest)
        raise OutOfReachError(
            f"the budget of {budget.target_ms:.2f} ms ({budget.original_ms / budget.target_ms:.2f}x) is out "
            f"of reach: the fastest candidates give {budget.predict(fastest):.2f} ms, a {best:.2f}x speed-up "
            f"at best; ask for less, or widen the rank grid (e.g. --grid bottleneck=0.0625,0.125,0.25)",
            best,
        )
    unit = budget.slots_ms / bins
    inf = math.inf
    best = np.full(bins + 1, inf)
    best[0] = 0.0
    picks = []
    for slot in slots:
        new = np.full(bins + 1, inf)
        pick = np.full(bins + 1, -1, dtype=np.int32)
        for j, cand in enumerate(slot.candidates):
            cost = max(0, math.ceil(cand.latency_ms / unit - 1e-9))
            if cost > bins:
                continue
            total = np.full(bins + 1, inf)
            total[cost:] = best[: bins + 1 - cost] + cand.error
            better = total < new
            new[better], pick[better] = total[better], j
        best = new
        picks.append(pick)
    if not np.isfinite(best).any():  # rounding up made a just-reachable budget unreachable: the
        # fastest candidate everywhere meets it (checked above)
        return [min(range(len(s.candidates)), key=lambda j, s=s: s.candidates[j].latency_ms) for s in slots]
    b = int(np.argmin(best))  # least error; among equals the fastest (argmin takes the first)
    chosen = []
    for slot, pick in zip(reversed(slots), reversed(picks), strict=True):
        j = int(pick[b])
        chosen.append(j)
        b -= max(0, math.ceil(slot.candidates[j].latency_ms / unit - 1e-9))
    return chosen[::-1]


@dataclass(frozen=True)
class Unused:
    """A layer whose next slower rank (the chosen kind, one grid step up) fit in what the plan left of
    its aim yet scored no lower error (least error wins, among equals the fastest): where a plan
    lands more than one grid step past its aim."""

    layer: str
    chosen: str
    chosen_error: float
    slower: str
    slower_error: float
    slower_by_ms: float


def unused_steps(slots, picks: list[int], slack_ms: float) -> list[Unused]:
    """Per layer, the next slower rank of the chosen kind (same precision) where `slack_ms` (the aim
    less the prediction) still pays for it and it scores no lower error: the plan lands more than
    that grid step past its aim there. Empty where the plan is within one grid step of its aim."""
    found = []
    for slot, j in zip(slots, picks, strict=True):
        chosen = slot.candidates[j]
        if chosen.kind == "mix":  # a composite's mixes have no order of rank
            continue
        ranks = [
            c
            for c in slot.candidates
            if c.kind == chosen.kind and c.precision == chosen.precision and c.latency_ms > chosen.latency_ms
        ]
        if not ranks:
            continue
        up = min(ranks, key=lambda c: c.latency_ms)
        if up.latency_ms - chosen.latency_ms <= slack_ms and up.error >= chosen.error:
            step = up.latency_ms - chosen.latency_ms
            found.append(Unused(slot.name, chosen.label, chosen.error, up.label, up.error, step))
    return found
