"""`make_plan`: measure, score and choose, returning a typed Plan with the recipe it implies."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgecnn.errors import BadArgumentError, OutOfReachError
from edgecnn.plan.candidates import Grid, Slot, enumerate_slots
from edgecnn.plan.choose import Budget, Unused, choose, target_ms, unused_steps
from edgecnn.plan.latency import RECENT_S, LatencyTable
from edgecnn.plan.scores import score

log = logging.getLogger(__name__)

HEADROOM = 0.05
# An int8 student's speed-up moves more between runs than an fp32 one's (benchmarks/HISTORY.md).
INT8_HEADROOM = 0.10
# A prediction this much faster than the aim, with no layer to blame, is explained by its timing
PAST_AIM = 1.05


@dataclass
class PlanOptions:
    runtime: str = "onnxruntime"
    speedup: float | None = 2.0
    latency_ms: float | None = None
    device: str = "cpu"
    threads: int | None = None
    batch: int = 1
    grid: Grid = field(default_factory=Grid)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    use_cache: bool = True
    cache_dir: Path | None = None
    layer_seconds: float = 0.15  # timed seconds per candidate
    model_seconds: float = 2.0  # timed seconds for the whole original model
    check_seconds: float = 0.4  # per model and round when a choice is timed whole against the original
    # Per model, the chosen model's re-timing against the original (the prediction): as long as the
    # measurement it predicts, so both sample a shared host's speed regimes alike
    # (benchmarks/speed_regimes.py).
    confirm_seconds: float = 6.0
    int8: bool = False  # precision in the plan too: each layer fp32 or int8 (the runtime's fast scheme)
    # Aim this fraction faster than asked (None: HEADROOM, INT8_HEADROOM with int8): a whole-model
    # timing on a shared host moves between runs (benchmarks/HISTORY.md).
    headroom: float | None = None
    # What the speed-up is over: the runtime's default float math (OpenVINO: bf16 on CPUs with bf16
    # units, what a user deploying the plain model gets) or "fp32" (float layers pinned to fp32)
    baseline: str = "default"

    @property
    def confirm_rounds(self) -> int:
        """Rounds of a chosen model's re-timing against the original: as long as `confirm_seconds`."""
        return max(7, math.ceil(self.confirm_seconds / self.check_seconds))

    @property
    def aim_headroom(self) -> float:
        if self.headroom is not None:
            return self.headroom
        return INT8_HEADROOM if self.int8 else HEADROOM

    def validate(self) -> PlanOptions:
        from edgecnn.runtime import check_device, get_backend, get_precision

        backend = get_backend(self.runtime)
        check_device(self.device, self.runtime)
        backend.timing_options("fp32", self.baseline)  # an unknown baseline: one line
        quantizes = any(get_precision(p).calibrated for p in backend.precisions)
        if self.int8 and not (quantizes and backend.node_profiler):
            raise BadArgumentError(
                f"--int8 plans time int8 layers inside the model, which {self.runtime} cannot: use "
                "--runtime onnxruntime or openvino"
            )
        if (self.speedup is None) == (self.latency_ms is None):
            raise BadArgumentError("give one budget: --speedup S or --latency-ms L")
        if self.speedup is not None and not self.speedup > 1:
            raise BadArgumentError(f"--speedup must be > 1 (the original runs at 1x), got {self.speedup}")
        if self.latency_ms is not None and not self.latency_ms > 0:
            raise BadArgumentError(f"--latency-ms must be positive, got {self.latency_ms}")
        if not 0 <= self.aim_headroom < 1:
            raise BadArgumentError(f"--headroom must be a fraction in [0, 1), got {self.headroom}")
        if not (self.check_seconds > 0 and self.confirm_seconds > 0):
            raise BadArgumentError("the check and confirmation timings must be positive")
        if self.batch < 1 or (self.threads is not None and self.threads < 1):
            raise BadArgumentError("--batch and --threads must be positive")
        return self


@dataclass
class LayerChoice:
    name: str
    choice: str  # "keep", "separable 2", "bottleneck 32/64", "lowrank 48", "keep int8"
    kind: str
    value: object
    # None in a uniform pruning plan: its groups are timed together, and not scored one by one
    latency_before_ms: float | None
    latency_after_ms: float | None
    error: float | None
    macs_before: int
    macs_after: int
    precision: str = "fp32"


@dataclass
class Plan:
    runtime: str
    device: str
    threads: int | None
    batch: int
    input_shape: tuple[int, ...]
    original_ms: float
    target_ms: float  # what was asked
    predicted_ms: float
    layers: list[LayerChoice]
    calibration_images: int
    latencies_measured: int  # timings made in this plan
    latencies_cached: int  # timings read from the cache
    int8_activations: str | None = None  # the scheme of the int8 layers; None: an fp32 plan
    # predicted_ms - (original_ms - sum of ms before + sum of ms after): what the chosen model,
    # timed whole in the plan, cost beyond its layers' sum (0 where the runtime cannot profile)
    context_ms: float = 0.0
    aim_ms: float | None = None  # what the choice aimed at: the target less the headroom
    latencies_retimed: int = 0  # of those measured, cached ones timed again: timed busy, quiet now
    # the chosen model's whole time in the check that picked it (predicted_ms is its fresh re-timing)
    checked_ms: float | None = None
    # layers whose next slower rank fit in the aim's slack but scored no lower error: why a plan
    # overshoots its aim by more than one grid step (empty where it does not)
    unused: list[Unused] = field(default_factory=list)
    # A plan made by `plan.uniform`: the fraction of every group's channels it removes (None: the
    # knapsack's per-layer plan)
    uniform: float | None = None

    def overshoot(self) -> str | None:
        """Why the prediction lands more than one grid step past the aim, where it does: the layers
        whose next slower rank fit in what is left of the aim; or, with none, the re-timing of the
        choice that came out faster than the check that picked it (more than PAST_AIM)."""
        aim_ms = self.aim_ms or self.target_ms
        past = (
            f"predicted {self.predicted_speedup:.2f}x lands past the aim of {self.original_ms / aim_ms:.2f}x"
        )
        if not self.unused:
            if self.checked_ms and self.predicted_ms * PAST_AIM < aim_ms:
                return (
                    f"{past} by timing, not by the grid: the choice was checked at "
                    f"{self.original_ms / self.checked_ms:.2f}x and re-timed at {self.predicted_speedup:.2f}x"
                )
            return None
        shown = sorted(self.unused, key=lambda u: u.slower_error - u.chosen_error)[:2]
        named = "; ".join(
            f"{u.layer}: {u.chosen} (error {u.chosen_error:.3f}) over {u.slower} "
            f"({u.slower_error:.3f}, {u.slower_by_ms:.3f} ms slower)"
            for u in shown
        )
        return (
            f"{past} by more than one grid step: at {len(self.unused)} layers the next slower rank fit in "
            f"what is left of the aim but scored no lower error ({named}); the scores do not reward "
            "keeping more there"
        )

    def fp32_layers(self) -> list[str]:
        """Layers an int8 plan leaves in fp32 (where int8 was slower there, or cost too much error)."""
        from edgecnn.runtime import is_baseline

        return [layer.name for layer in self.layers if self.int8_activations and is_baseline(layer.precision)]

    @property
    def predicted_speedup(self) -> float:
        return self.original_ms / self.predicted_ms

    def transforms(self) -> list[dict]:
        """The recipe's transform steps that rebuild the chosen structure: the pruned groups first
        ({"name": "prune", "groups": {root: kept channels}}), then one step per swap kind."""
        steps: dict[str, dict] = {}
        for layer in self.layers:
            if layer.kind == "prune":
                steps.setdefault("prune", {"name": "prune", "groups": {}})["groups"].update(layer.value)
            elif layer.kind != "keep":
                steps.setdefault(layer.kind, {"name": layer.kind, "layers": {}})["layers"][layer.name] = (
                    layer.value
                )
        return sorted(steps.values(), key=lambda step: step["name"] != "prune")

    def swapped(self) -> list[str]:
        """The layers a swap replaces (what refit fits), not the pruned groups."""
        return [layer.name for layer in self.layers if layer.kind not in ("keep", "prune")]

    def prunes(self) -> bool:
        """Whether the plan prunes any group (only then is the plan without pruning a rival)."""
        return any(layer.kind == "prune" for layer in self.layers)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["predicted_speedup"] = self.predicted_speedup
        return d


def make_plan(
    model,
    input_shape: tuple[int, ...],
    calibration,
    options: PlanOptions,
    *,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> Plan:
    """Plan `model` (eval mode, BN folded: what the runtime will run) for one sample of `input_shape`.

    calibration: batches (N, C, H, W arrays) of real images for the error scores, or a list of them.
    on_progress(stage, done, total) reports each measured candidate and scored batch.
    """
    opts = options.validate()
    progress = on_progress or (lambda stage, done, total: None)
    table, batches = latency_table(opts), list(calibration)
    try:
        plan = _plan_with(table, model, input_shape, batches, opts, progress)
        if plan.predicted_ms <= plan.target_ms or not table.old_hits:
            return plan
        failed = f"missed its check ({plan.predicted_speedup:.2f}x)"
    except OutOfReachError as e:
        if not table.old_hits:
            raise
        failed = f"is out of reach ({e.best_speedup:.2f}x at best)"
    log.warning(
        "the plan %s with %d latencies from the cache, timed over %d minutes ago: timing them again",
        *(failed, table.old_hits, RECENT_S // 60),
    )
    table.refresh()
    return _plan_with(table, model, input_shape, batches, opts, progress)


def _plan_with(table: LatencyTable, model, input_shape, batches, opts: PlanOptions, progress) -> Plan:
    """One plan from the latencies `table` gives (cached, or measured now)."""
    import torch

    example = torch.zeros(1, *input_shape)
    select = dict(include=opts.include, exclude=opts.exclude)
    pruning = "prune" in opts.grid.kinds
    slots = enumerate_slots(model, example, opts.grid, **select, required=not pruning)
    comps = _composites(model, example, slots, table, opts, progress) if pruning else []
    extra = [n for c in comps for n in c.convs]
    original_ms, int8 = _time_candidates(model, slots, input_shape, table, batches, opts, progress, extra)
    on_batch = lambda i: progress("scoring candidates on calibration images", i, len(batches))  # noqa: E731
    images = score(slots, model, batches, on_batch=on_batch, activations=int8.activations if int8 else "s8")
    if comps:
        slots = _with_composites(model, slots, comps, input_shape, table, batches, progress)
    request_ms = target_ms(original_ms, speedup=opts.speedup, latency_ms=opts.latency_ms)
    budget = Budget(original_ms, sum(s.keep.latency_ms for s in slots), request_ms)
    picks = choose_with_headroom(slots, budget, opts.aim_headroom)
    before = {s.name: s.keep.latency_ms for s in slots}
    after = {s.name: s.candidates[j].latency_ms for s, j in zip(slots, picks, strict=True)}
    predicted = checked = None
    if table.backend.node_profiler:
        check = _Check(model, slots, input_shape, table, budget, int8, progress, request_ms)
        best = check.run(picks, opts.check_seconds, opts.confirm_rounds)
        picks, after, predicted, checked = best.picks, best.times, best.wall_ms, best.checked_ms
        table.save()
    log.info(
        "latency table: %d measured (%d cached ones timed while other processes held a core), %d from cache",
        *(table.misses, table.stale, table.hits),
    )
    layers = [
        layer
        for s, j in zip(slots, picks, strict=True)
        for layer in _layer_choices(s, s.candidates[j], before[s.name], after[s.name])
    ]
    chosen_ms = sum(after.values())
    predicted = predicted if predicted is not None else budget.predict(chosen_ms)
    return Plan(
        *(opts.runtime, opts.device, opts.threads, opts.batch, tuple(input_shape)),
        original_ms,
        request_ms,
        predicted,
        layers,
        images,
        *(table.misses, table.hits),
        int8.activations if int8 else None,
        context_ms=predicted - (original_ms - sum(before.values()) + chosen_ms)
        if table.backend.node_profiler
        else 0.0,
        aim_ms=budget.target_ms,
        latencies_retimed=table.stale,
        checked_ms=checked,
        unused=unused_steps(slots, picks, budget.target_ms - predicted),
    )


def _with_composites(model, slots, comps, input_shape, table, batches, progress) -> list[Slot]:
    """The slots with each composite's convs as one slot, its prune candidates timed in context and
    scored on the calibration images."""
    from edgecnn.plan.groups import compose, score_prunes, tagged, time_prunes

    on_probe = lambda k, n: progress("profiling pruned probe models", k, n)  # noqa: E731
    timed = {s.name for s in slots}
    time_prunes(model, comps, tagged(slots, comps), input_shape, table, timed=timed, on_probe=on_probe)
    progress("scoring pruned groups on calibration images", 0, 1)
    score_prunes(model, comps, batches)
    table.save()
    return compose(slots, comps)


def _composites(model, example, slots, table, opts: PlanOptions, progress) -> list:
    """The prunable groups inside blocks (`plan.groups`), where the runtime profiles in context and
    the plan is fp32 (else none, logged); nothing to choose from at all is a one-line error."""
    from edgecnn.plan.groups import find_composites
    from edgecnn.transforms.base import SwapOptions, selected

    comps = []
    if opts.int8 or not table.backend.node_profiler:
        why = "int8 plans" if opts.int8 else f"{opts.runtime}, which has no in-context profiler"
        log.info("pruning candidates are not planned for %s: swaps only", why)
    else:
        progress("finding prunable channel groups", 0, 1)
        select = SwapOptions(include=opts.include, exclude=opts.exclude)
        comps = [
            c
            for c in find_composites(model, example, opts.grid.prune, opts.grid.multiple_of)
            if all(selected(n, select) for n in c.convs)
        ]
    if not slots and not comps:
        where = " among the selected layers" if opts.include or opts.exclude else ""
        raise BadArgumentError(
            f"--candidates {','.join(opts.grid.kinds)}: no layer or channel group of the model{where} can "
            "take them; allow more kinds (--candidates prune,separable,bottleneck,lowrank)"
        )
    return comps


def latency_table(opts: PlanOptions) -> LatencyTable:
    """The runtime's latency table for this setting (each baseline and thread count has its own)."""
    setting = dict(device=opts.device, threads=opts.threads, batch=opts.batch, seconds=opts.layer_seconds)
    return LatencyTable(
        opts.runtime, cache_dir=opts.cache_dir, use_cache=opts.use_cache, baseline=opts.baseline, **setting
    )


def _layer_choices(slot, chosen, before_ms: float, after_ms: float) -> list[LayerChoice]:
    """What a slot's choice does, per layer: a composite's mix (or keep) as each of its swappable
    convs' own choice, the composite's times shared out in proportion to their probes (so the rows
    still add up to what the plan counted); a pruned group as one row."""
    if not slot.own or chosen.kind == "prune":
        return [_layer_choice(slot.name, slot.keep, chosen, before_ms, after_ms)]
    mix = chosen.value or {}
    picked = {name: mix.get(name, own.keep) for name, own in slot.own.items()}
    ms_before = sum(own.keep.latency_ms for own in slot.own.values()) or 1.0
    ms_after = sum(c.latency_ms for c in picked.values()) or 1.0
    return [
        _layer_choice(
            name,
            own.keep,
            picked[name],
            before_ms * own.keep.latency_ms / ms_before,
            after_ms * picked[name].latency_ms / ms_after,
        )
        for name, own in slot.own.items()
    ]


def _layer_choice(name, keep, chosen, before_ms: float, after_ms: float) -> LayerChoice:
    return LayerChoice(
        name,
        chosen.label,
        chosen.kind,
        chosen.value,
        before_ms,
        after_ms,
        chosen.error,
        keep.macs,
        chosen.macs,
        chosen.precision,
    )


def _time_candidates(model, slots, input_shape, table, batches, opts: PlanOptions, progress, extra=()):
    """Time the original and every candidate on the runtime: inside the model by its profiler where it
    has one, else each alone at its layer's input shape. With --int8, each candidate in int8 too.
    Returns (original ms, the int8 setting or None); the table is saved."""
    progress("timing the original model", 0, 1)
    original_ms = table.latency(model, input_shape, seconds=opts.model_seconds)
    if table.backend.node_profiler and slots:
        from edgecnn.plan.context import context_latencies

        on_probe = lambda k, n: progress("profiling probe models", k, n)  # noqa: E731
        context_latencies(model, slots, input_shape, table, on_probe=on_probe, extra=extra)
    else:
        todo = [(s, c) for s in slots for c in s.candidates]
        for i, (slot, cand) in enumerate(todo):
            progress("timing each candidate alone", i + 1, len(todo))
            cand.latency_ms = table.latency(cand.block, slot.in_shape)
    int8 = None
    if opts.int8 and slots:
        import numpy as np

        from edgecnn.plan.context import Quantized, context_latencies

        for slot in slots:
            slot.candidates += [c.in_precision("int8") for c in slot.candidates]
        int8 = Quantized(table.backend.int8_scheme("auto"), np.concatenate(batches)[:16])
        on_probe = lambda k, n: progress("profiling int8 probe models", k, n)  # noqa: E731
        context_latencies(model, slots, input_shape, table, int8=int8, on_probe=on_probe)
    table.save()
    return original_ms, int8


def choose_with_headroom(slots, budget: Budget, headroom: float) -> list[int]:
    """`choose` for `budget.target_ms` less `headroom` (the budget keeps the aim), or, where only the
    target itself is within reach, for the target (a warning says so); out of reach, the error names
    the best reachable speed-up."""
    request_ms = budget.target_ms
    budget.target_ms = request_ms / (1 + headroom)
    try:
        return choose(slots, budget)
    except OutOfReachError:
        if headroom == 0:
            raise
        budget.target_ms = request_ms
        picks = choose(slots, budget)
        log.warning(
            "the target is within reach, but not with %.0f%% headroom: the plan aims at it", 100 * headroom
        )
        return picks


@dataclass
class Measured:
    """A choice timed whole in the model: its time, summed error, picks and per-layer times."""

    wall_ms: float
    error: float
    picks: list[int]
    times: dict[str, float]
    checked_ms: float | None = None  # once re-timed (wall_ms), what the check had timed


class _Check:
    """Profile and time the model a choice builds, choose again with what it showed, and settle on the
    best choice so measured. Best: least error among the measured choices within the budget (the aim,
    else the request), else the fastest measured. The prediction is the chosen model's own time, as a
    ratio to the original timed in the same rounds; what the whole cost beyond its layers' sum is
    charged to the next choice.

    What a layer's chosen candidate costs there beyond its probe time is a property of the context,
    so the difference is carried to every candidate of that layer in the same precision. Mixing
    precisions can cost more than either (layout changes at every boundary in ONNX Runtime), so an
    int8 plan also settles a choice among int8 candidates alone."""

    def __init__(self, model, slots, input_shape, table, budget, int8, progress, request_ms):
        self.model, self.slots, self.shape, self.table = model, slots, input_shape, table
        self.budget, self.int8, self.progress, self.request_ms = budget, int8, progress, request_ms
        self.probed = {id(c): c.latency_ms for s in slots for c in s.candidates}
        self.measured: list[Measured] = []
        self.reference = None

    def run(self, picks, seconds: float, confirm_rounds: int, rounds: int = 4) -> Measured:
        from edgecnn.plan.context import Reference, confirm_ratio

        setting = dict(seconds=seconds, **self.table.setting)
        self.reference = Reference(self.model, self.shape, self.table.backend, **setting)
        shipped = Reference(self.model, self.shape, self.table.backend, shipped=True, **setting)
        try:
            self.settle([s.candidates for s in self.slots], "", rounds, picks)
            if self.int8 is not None:
                try:
                    self.settle([s.in_precision("int8") for s in self.slots], "all-int8", rounds)
                except BadArgumentError:  # out of reach in int8 alone, even by its probes
                    pass
            # The original itself (every layer kept, in fp32) is never the answer to "make it
            # faster": timed against itself it can only "meet" a target by a noisy second.
            changed = [m for m in self.measured if not _unchanged(self.slots, m.picks)] or self.measured

            def retime(picks) -> float:
                args = (self.model, self.slots, picks, self.shape, self.table, shipped)
                return self.budget.original_ms * confirm_ratio(*args, int8=self.int8, rounds=confirm_rounds)

            wall, best = _confirm(changed, self.budget, self.request_ms, retime, self.progress)
        finally:
            self.reference.close()
            shipped.close()
        return dataclasses.replace(best, wall_ms=wall, checked_ms=best.wall_ms)

    def measure(self, picks) -> None:
        from edgecnn.plan.context import choice_latencies

        args = (self.model, self.slots, picks, self.shape, self.table, self.reference)
        times, ratio = choice_latencies(*args, int8=self.int8)
        wall = ratio * self.budget.original_ms  # the original, timed with it, stands for original_ms
        for slot, j in zip(self.slots, picks, strict=True):
            chosen = slot.candidates[j]
            shift = times[slot.name] - self.probed[id(chosen)]
            for c in slot.in_precision(chosen.precision):
                c.latency_ms = max(0.0, self.probed[id(c)] + shift)
        # The budget now predicts this choice's measured whole time, and charges the next choice the
        # same overhead beyond its layers.
        self.budget.overhead_ms += wall - self.budget.predict(sum(times.values()))
        error = sum(s.candidates[j].error for s, j in zip(self.slots, picks, strict=True))
        self.measured.append(Measured(wall, error, list(picks), times))

    def settle(self, pool, label: str, rounds: int, picks=None) -> None:
        """Measure, re-choose among `pool` (per slot, the candidates allowed), until it stands. Each
        pool starts from its probes: what a mixed-precision choice cost says nothing about an all-int8
        one, and charged to it would rule it out unmeasured."""
        self.budget.overhead_ms = 0.0
        for cands in pool:
            for c in cands:
                c.latency_ms = self.probed[id(c)]
        if picks is None:
            picks = _choose_among(self.slots, pool, self.budget)
        stage = " ".join(filter(None, ("checking the", label, "choice in context")))
        for r in range(rounds):
            self.progress(stage, r + 1, rounds)
            self.measure(picks)
            try:
                again = _choose_among(self.slots, pool, self.budget)
            except BadArgumentError:  # what it showed puts the budget out of reach
                return
            if again == picks:
                return
            picks = again


def _confirm(measured, budget, request_ms, retime, progress, most: int = 3):
    """Time afresh (`retime(picks)` -> ms) the checked choices in the order they would be picked,
    and return (ms, choice) for the first whose new time meets the request, else the fastest so
    re-timed (with a warning). The order: least error among those whose check met the aim (else the
    request), then the fastest checked; at most `most` of them. The new time, not the check, is the
    plan's prediction: the check is what the choice was picked by, so it is biased fast."""
    within = [m for m in measured if m.wall_ms <= budget.target_ms] or [
        m for m in measured if m.wall_ms <= request_ms
    ]
    order = [*sorted(within, key=lambda m: m.error), min(measured, key=lambda m: m.wall_ms)]
    seen: dict[tuple, tuple[float, tuple]] = {}
    for m in order:
        if len(seen) == most or tuple(m.picks) in seen:
            continue
        progress("confirming the choice's speed", len(seen) + 1, most)
        wall = seen[tuple(m.picks)] = (retime(m.picks), m)
        log.info(
            "choice checked at %.2fx, re-timed at %.2fx",
            budget.original_ms / m.wall_ms,
            budget.original_ms / wall[0],
        )
        if wall[0] <= request_ms:
            return wall
    wall = min(seen.values(), key=lambda w: w[0])
    log.warning(
        "no checked choice met the target in context: the fastest ran %.2f ms (%.2fx), the target "
        "is %.2f ms (%.2fx); it is kept",
        wall[0],
        budget.original_ms / wall[0],
        request_ms,
        budget.original_ms / request_ms,
    )
    return wall


def _unchanged(slots, picks) -> bool:
    """Whether a choice keeps every layer as it is, in the baseline precision: the original model."""
    from edgecnn.runtime import is_baseline

    chosen = [s.candidates[j] for s, j in zip(slots, picks, strict=True)]
    return all(c.kind == "keep" and is_baseline(c.precision) for c in chosen)


def _choose_among(slots, pool, budget) -> list[int]:
    """`choose` restricted to `pool` (per slot, a list of its candidates), as indices into the slots."""
    sub = [Slot(s.name, s.layer, s.in_shape, list(cands)) for s, cands in zip(slots, pool, strict=True)]
    picks = choose(sub, budget)
    return [
        next(i for i, c in enumerate(s.candidates) if c is cands[j])
        for s, cands, j in zip(slots, pool, picks, strict=True)
    ]
