"""The latency-aware planner: per-layer candidates, their latency measured on the target runtime,
their error measured on real images, and the least-error choice under a latency budget.

`make_plan` is the one call; `edgecnn.compress` builds, recovers and exports what it chooses.
"""

from edgecnn.plan.api import LayerChoice, Plan, PlanOptions, make_plan
from edgecnn.plan.candidates import Candidate, Grid, Slot, enumerate_slots
from edgecnn.plan.choose import Budget, choose, target_ms
from edgecnn.plan.latency import LatencyTable

__all__ = [
    "Budget",
    "Candidate",
    "Grid",
    "LatencyTable",
    "LayerChoice",
    "Plan",
    "PlanOptions",
    "Slot",
    "choose",
    "enumerate_slots",
    "make_plan",
    "target_ms",
]
