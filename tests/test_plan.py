"""The latency-aware planner and `compress`: choice, in-context timing, cache, end to end, bad input."""

import dataclasses
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _cli import run_cli

from edgecnn.errors import BadArgumentError
from edgecnn.plan import Budget, Candidate, PlanOptions, Slot, choose, enumerate_slots
from edgecnn.plan.context import probe_model, profile_probe
from edgecnn.plan.tagging import layer_times, tag_onnx
from edgecnn.runtime import available, get_backend
from edgecnn.transforms import convert, convert_exact, load_model_file, save_with_recipe
from edgecnn.zoo import load_model

EDGECNN = [sys.executable, "-m", "edgecnn"]
RUNTIMES = [r for r in ("onnxruntime", "openvino") if available(r)]


def _slots(table):
    """Slots from [[(latency, error), ...], ...]; the first candidate of each is keep."""
    return [
        Slot(
            f"s{i}",
            None,
            (1,),
            [Candidate("keep" if j == 0 else "x", j, 0, 0, 0.0, None, t, e) for j, (t, e) in enumerate(row)],
        )
        for i, row in enumerate(table)
    ]


def test_knapsack_finds_the_least_error_within_the_budget():
    rng = np.random.default_rng(0)
    for _ in range(30):
        table = [
            [(1.0, 0.0)] + [(float(rng.uniform(0.1, 1.0)), float(rng.uniform(0, 1))) for _ in range(3)]
            for _ in range(4)
        ]
        slots = _slots(table)
        budget = Budget(original_ms=5.0, layers_ms=4.0, target_ms=float(rng.uniform(2.5, 4.5)))
        feasible = [
            sum(table[i][j][1] for i, j in enumerate(combo))
            for combo in itertools.product(range(4), repeat=4)
            if sum(table[i][j][0] for i, j in enumerate(combo)) <= budget.slots_ms
        ]
        if not feasible:
            with pytest.raises(BadArgumentError, match="out of reach"):
                choose(slots, budget)
            continue
        picks = choose(slots, budget)
        spent = sum(table[i][j][0] for i, j in enumerate(picks))
        assert spent <= budget.slots_ms + 1e-9
        best = min(feasible)
        assert sum(table[i][j][1] for i, j in enumerate(picks)) <= best + 1e-2  # discretisation only


def test_a_budget_the_fastest_candidates_just_meet_takes_them():
    """Latencies are rounded up to the knapsack's grid, so a budget the fastest candidates meet
    exactly can round out of reach: it is met by them, not refused."""
    slots = _slots([[(2.0, 0.0), (1.0 + 1e-7, 0.5)], [(2.0, 0.0), (1.0 + 1e-7, 0.1)]])
    budget = Budget(original_ms=5.0, layers_ms=4.0, target_ms=3.0000003)  # 1 ms fixed + 2 ms of layers
    assert choose(slots, budget, bins=3) == [1, 1]


def test_an_unreachable_budget_names_the_best_speedup():
    slots = _slots([[(2.0, 0.0), (1.0, 0.5)], [(2.0, 0.0), (1.5, 0.1)]])
    budget = Budget(original_ms=5.0, layers_ms=4.0, target_ms=1.0)  # fixed 1 ms alone uses it all
    with pytest.raises(BadArgumentError, match=r"out of reach: .* a 1\.43x speed-up at best"):
        choose(slots, budget)


def test_an_overshoot_past_one_grid_step_names_the_layers_that_caused_it():
    """Where slower candidates fit the aim's slack but score no lower error (noisy scores of swaps
    that all lose the layer), the knapsack takes the fastest: the plan names those layers, and
    says nothing where no slower step fits (it is within one grid step of its aim)."""
    from edgecnn.cli.compress import _overshoot_lines
    from edgecnn.plan import LayerChoice, Plan
    from edgecnn.plan.choose import unused_steps

    # s0: slower ranks score worse (1.08, 1.10) than the fastest (1.04); s1: an ordinary accuracy ladder
    slots = _slots(
        [[(2.0, 0.0), (1.5, 1.10), (1.0, 1.08), (0.5, 1.04)], [(2.0, 0.0), (1.5, 0.1), (1.0, 0.5)]]
    )
    budget = Budget(original_ms=5.0, layers_ms=4.0, target_ms=4.0)  # 1 ms to save: s0's first step does
    picks = choose(slots, budget)
    assert picks == [3, 0]  # 1.5 ms saved where 1 ms was asked: more than one grid step past
    predicted = budget.predict(0.5 + 2.0)
    unused = unused_steps(slots, picks, budget.target_ms - predicted)
    assert [(u.layer, u.chosen_error, u.slower_error, u.slower_by_ms) for u in unused] == [
        ("s0", 1.04, 1.08, 0.5)
    ]
    assert unused_steps(slots, picks, 0.4) == []  # no slower step fits: within one grid step
    # a slower candidate of lower error that fits is not the knapsack's doing (the latencies moved
    # after the choice, or rounding): not listed
    assert [u.layer for u in unused_steps(slots, [3, 2], 0.6)] == ["s0"]
    # a step is the next rank of the chosen kind: another kind that fits is a different choice
    other = Slot(
        "s",
        None,
        (1,),
        [Candidate(k, 1, 0, 0, 0.0, None, t, e) for k, t, e in (("x", 0.5, 1.0), ("y", 0.8, 1.2))],
    )
    assert unused_steps([other], [0], 0.5) == []
    layers = [LayerChoice("s0", "x 3", "x", 3, 2.0, 0.5, 1.04, 1, 1)]
    plan = Plan("onnxruntime", "cpu", None, 1, (1,), 5.0, 4.0, predicted, layers, 8, 0, 0)
    assert _overshoot_lines(plan) == []
    (line,) = _overshoot_lines(dataclasses.replace(plan, aim_ms=4.0, unused=unused))
    assert line.startswith("note: predicted 1.43x lands past the aim of 1.25x by more than one grid step")
    assert "s0: x 3 (error 1.040) over x 2 (1.080, 0.500 ms slower)" in line
    # no layer to blame: a choice re-timed faster than the check that picked it says so
    timed = dataclasses.replace(plan, aim_ms=4.0, predicted_ms=3.5, checked_ms=3.9)
    assert _overshoot_lines(timed) == [
        "note: predicted 1.43x lands past the aim of 1.25x by timing, not by the grid: the choice was "
        "checked at 1.28x and re-timed at 1.43x"
    ]
    assert _overshoot_lines(dataclasses.replace(timed, predicted_ms=3.9)) == []  # within 5% of its aim


@pytest.mark.parametrize("outcome", ["out of reach", "missed"])
def test_a_plan_that_fails_by_cached_latencies_times_them_again(tmp_path, monkeypatch, caplog, outcome):
    """A cached latency may come from a moment of other load: a plan that comes out out of reach, or
    misses its check, with latencies from the cache timed over RECENT_S ago measures each of them
    again, once, before it answers; with none such (nothing cached, or all timed in this session)
    the answer stands."""
    import edgecnn.plan.api as api
    from edgecnn.errors import OutOfReachError
    from edgecnn.plan import LatencyTable, Plan

    table = LatencyTable("onnxruntime", cache_dir=tmp_path)
    table.put("k", 1.0)
    table.measured("new", lambda: 3.0)
    table.save()
    table = LatencyTable("onnxruntime", cache_dir=tmp_path)
    assert table.get("k") == 1.0 and table.get("new") == 3.0 and (table.hits, table.old_hits) == (2, 1)
    table.refresh()
    assert table.get("k") is None and table.put("k", 2.0) == 2.0 and table.get("k") == 2.0
    table.save()
    assert LatencyTable("onnxruntime", cache_dir=tmp_path).get("k") == 2.0  # the fresh figure is kept

    calls = []

    def plan_with(table, *args):
        calls.append(table.refreshing)
        table.hits = table.old_hits = 0 if table.refreshing else 5
        if outcome == "out of reach" and not table.refreshing:
            raise OutOfReachError("the budget is out of reach", 1.2)
        predicted = 2.5 if table.refreshing else 3.0  # the stale one misses the 2.5 ms target
        return Plan("onnxruntime", "cpu", None, 1, (1,), 5.0, 2.5, predicted, [], 8, 0, table.hits)

    monkeypatch.setattr(api, "_plan_with", plan_with)
    monkeypatch.setattr(api, "latency_table", lambda opts: LatencyTable("onnxruntime", cache_dir=tmp_path))
    plan = api.make_plan(None, (1, 8, 8), [], PlanOptions(speedup=2))
    assert calls == [False, True] and plan.predicted_ms == 2.5
    said = "is out of reach (1.20x at best)" if outcome == "out of reach" else "missed its check (1.67x)"
    assert f"the plan {said} with 5 latencies from the cache, timed over 10 minutes ago" in caplog.text

    def measured_now(table, *args):  # all from this session's cache: nothing to time again
        calls.append(table.refreshing)
        table.hits, table.old_hits = 5, 0
        raise OutOfReachError("the budget is out of reach", 1.2)

    monkeypatch.setattr(api, "_plan_with", measured_now)
    with pytest.raises(OutOfReachError):
        api.make_plan(None, (1, 8, 8), [], PlanOptions(speedup=2))
    assert calls[2:] == [False]


def test_the_plan_aims_faster_than_asked_where_it_can(caplog):
    """With headroom the knapsack aims at target / (1 + h); where only the target itself is within
    reach it aims at the target (saying so); out of reach even so, the error names the best."""
    from edgecnn.plan.api import choose_with_headroom

    slots = _slots([[(2.0, 0.0), (1.5, 0.1), (1.0, 0.5)], [(2.0, 0.0), (1.5, 0.1), (1.0, 0.5)]])
    # fixed 1 ms + layers (5 ms originally): 4.5 ms costs 0.1 error, 4 ms 0.2, 3 ms (the fastest) 1.0
    budget = Budget(original_ms=5.0, layers_ms=4.0, target_ms=4.6)
    picks = choose_with_headroom(slots, budget, 0.05)
    assert budget.target_ms == pytest.approx(4.6 / 1.05) and picks == [1, 1]
    budget = Budget(original_ms=5.0, layers_ms=4.0, target_ms=4.6)
    assert sorted(choose_with_headroom(slots, budget, 0.0)) == [0, 1]
    budget = Budget(original_ms=5.0, layers_ms=4.0, target_ms=3.05)
    with caplog.at_level("WARNING"):
        assert choose_with_headroom(slots, budget, 0.05) == [2, 2]
    assert budget.target_ms == 3.05 and "not with 5% headroom" in caplog.text
    budget = Budget(original_ms=5.0, layers_ms=4.0, target_ms=2.9)
    with pytest.raises(BadArgumentError, match=r"a 1\.67x speed-up at best"):
        choose_with_headroom(slots, budget, 0.05)


def test_the_prediction_is_a_fresh_timing_of_the_choice_not_the_check_that_picked_it(caplog):
    """Among checked choices, the least-error one within the aim is the one whose check came out fast
    (ResNet-50 plans checked at 2.3x ran 2.0x end to end). So it is timed again: where the new time
    misses the request the next is tried, and the prediction is the new time, not the check."""
    from edgecnn.plan.api import Measured, _confirm

    budget = Budget(original_ms=48.0, layers_ms=40.0, target_ms=22.5)  # the aim; the request is 24
    measured = [  # checked ms, error, picks, layer times
        Measured(20.0, 1.0, [1, 0], {}),
        Measured(22.0, 0.5, [2, 0], {}),
        Measured(18.0, 2.0, [1, 1], {}),
        Measured(30.0, 0.1, [0, 1], {}),  # least error, but its check missed the aim
    ]
    retimed = []

    def retime(new):
        def timer(picks):
            retimed.append(picks)
            return new[tuple(picks)]

        return timer

    noop = lambda *a: None  # noqa: E731
    new = {(2, 0): 26.0, (1, 0): 23.0, (1, 1): 19.0}
    wall, best = _confirm(measured, budget, 24.0, retime(new), noop)
    assert (wall, best.picks) == (23.0, [1, 0])  # [2, 0] re-timed at 26 ms missed 24 ms
    assert retimed == [[2, 0], [1, 0]]

    retimed.clear()
    with caplog.at_level("WARNING"):
        wall, best = _confirm(measured, budget, 24.0, retime(dict.fromkeys(new, 25.0) | {(1, 1): 24.5}), noop)
    assert (wall, best.picks) == (24.5, [1, 1])  # none met it: the fastest re-timed, with a warning
    assert retimed == [[2, 0], [1, 0], [1, 1]] and "no checked choice met the target" in caplog.text

    retimed.clear()
    wall, best = _confirm(measured[3:], budget, 24.0, retime({(0, 1): 21.0}), noop)
    assert (wall, best.picks) == (21.0, [0, 1]) and retimed == [[0, 1]]  # none within: the fastest


def test_whole_model_timings_take_the_typical_block_not_a_burst(monkeypatch):
    """The planner's check and compress's end-to-end timing share one paired timer that takes each
    model's median block: a burst in which one model runs 4x faster (what int8 in OpenVINO did here,
    and fp32 did not) moves neither, where the lowest block would have made a 2.5x student look 10x."""
    from types import SimpleNamespace

    import edgecnn.bench.latency
    import edgecnn.runtime
    from edgecnn.compress import CompressOptions
    from edgecnn.compress.measure import time_both
    from edgecnn.plan.context import Reference

    blocks = {"original": iter([10.0] * 99), "student": iter([4.0, 4.0, 1.0, *[4.0] * 96])}
    timed = []

    def time_calls(fn, *, min_seconds, **_):  # block times by the name the runner answers
        name = fn()
        if min_seconds == 0:  # a warm-up
            return SimpleNamespace(fast_ms=float("nan"))
        timed.append(name)
        return SimpleNamespace(fast_ms=next(blocks[name]))

    class Named:
        def __init__(self, name):
            self.name = name

        def run(self, x):
            return self.name

    monkeypatch.setattr(edgecnn.bench.latency, "time_calls", time_calls)
    reference = Reference(None, (3, 8, 8), None, seconds=0.01)
    reference.runner = Named("original")  # built
    assert reference.ratio(Named("student"), rounds=7) == pytest.approx(0.4)
    assert timed == ["student", "original"] * 7

    blocks = {"original": iter([10.0] * 99), "student": iter([4.0, 4.0, 1.0, *[4.0] * 96])}
    timed.clear()
    runners = iter([Named("original"), Named("student")])
    monkeypatch.setattr(edgecnn.runtime, "get_runner", lambda *a, **k: next(runners))
    opts = CompressOptions(runtime="torch", measure_seconds=1.0, measure_rounds=3)
    t = time_both(None, None, {"original": "o", "student": "s"}, (3, 8, 8), opts)
    # 3 rounds of 2 blocks of 0.5 s, alternating the two (and a round more: one burst in 6 widens the
    # interval of so few rounds)
    assert timed == ["original", "student"] * t.rounds and 6 <= t.rounds <= 18
    assert (t.original_ms, t.student_ms, t.other_ms) == (10.0, 4.0, None)  # torch: one float math


@pytest.mark.parametrize("default_math", ["bf16", "fp32"])
@pytest.mark.parametrize("baseline", ["default", "fp32"])
@pytest.mark.parametrize("int8", [False, True])
def test_no_timed_pair_differs_in_float_precision(monkeypatch, int8, baseline, default_math):
    """compress times the original and its student with the same float math: the runtime's default
    (OpenVINO: bf16 on a CPU with bf16 units) or pinned to f32 (`--baseline fp32`), an int8 student's
    float layers too; the same pair under the other baseline is a second, labelled figure, only where
    the two differ on this machine."""
    from types import SimpleNamespace

    import edgecnn.bench.latency
    import edgecnn.runtime
    from edgecnn.compress import CompressOptions
    from edgecnn.compress.measure import time_both
    from edgecnn.runtime import BACKENDS, BASELINES

    for backend in BACKENDS.values():  # the table: an int8 row's float layers run as fp32 rows do
        for b in BASELINES:
            if "int8" in backend.precisions:
                assert backend.timing_options("int8", b) == backend.timing_options("fp32", b)

    made = []

    class Fake:
        def __init__(self, source, pin):
            self.float_math = "fp32" if pin == "f32" else default_math
            self.ms = {"o": 10.0, "s": 5.0}[source] * (1.0 if self.float_math == "fp32" else 0.5)

        def run(self, x):
            return self.ms

    def get_runner(runtime, source, **options):
        made.append((source, options.get("precision")))
        return Fake(source, options.get("precision"))

    monkeypatch.setattr(edgecnn.runtime, "get_runner", get_runner)
    monkeypatch.setattr(edgecnn.bench.latency, "time_calls", lambda fn, **_: SimpleNamespace(fast_ms=fn()))
    opts = CompressOptions(runtime="openvino", int8=int8, baseline=baseline, measure_seconds=0.2)
    t = time_both(None, None, {"original": "o", "student": "s"}, (3, 8, 8), opts)
    pin, other_pin = ("f32", None) if baseline == "fp32" else (None, "f32")
    assert made[:2] == [("o", pin), ("s", pin)]  # the pair: the same float math
    assert made[2] == ("o", other_pin)  # the other baseline, tried
    math_ = {"f32": "fp32", None: default_math}
    assert t.float_math == math_[pin]
    scale = 1.0 if math_[pin] == "fp32" else 0.5
    assert (t.original_ms, t.student_ms) == (10.0 * scale, 5.0 * scale)
    if default_math == "bf16":  # the two differ here: the same pair in the other float math
        assert made[3] == ("s", other_pin) and t.other_math == math_[other_pin]
        assert t.other_ms[0] / t.other_ms[1] == 2.0
    else:  # one float math here: no second figure
        assert len(made) == 3 and t.other_ms is None and t.other_math == ""


def test_paired_timer_reports_the_spread_of_its_rounds():
    from edgecnn.bench.latency import PairedTimes, time_paired

    times = PairedTimes(((10.0, 12.0, 30.0), (5.0, 5.0, 6.0)))
    assert times.ratio() == pytest.approx(12.0 / 5.0) and times.spread() == (2.0, 5.0)
    calls = [0, 0]

    def fn(i):
        calls[i] += 1

    real = time_paired([lambda: fn(0), lambda: fn(1)], batch=1, rounds=3, block_s=0.0, warmup_s=(0.0, 0.01))
    assert [len(b) for b in real.blocks] == [3, 3] and min(calls) >= 30 and calls[1] > calls[0]


def test_a_paired_ratio_has_an_interval_and_a_busy_one_is_timed_longer(monkeypatch):
    """The ratio's bootstrap interval over rounds (paired) is a point where every round agrees and
    wide where they do not; a timing whose interval is wider than STEADY_WIDTH gets more rounds, up
    to max_rounds, and a steady one none."""
    from types import SimpleNamespace

    import edgecnn.bench.latency
    from edgecnn.bench.latency import STEADY_WIDTH, PairedTimes, time_paired

    steady = PairedTimes(((10.0, 20.0, 10.0), (5.0, 10.0, 5.0)))  # the machine halved: both alike
    assert steady.interval() == (2.0, 2.0) and steady.width() == 0.0
    busy = PairedTimes(((10.0,) * 4, (4.0, 6.0, 3.0, 7.0)))
    lo, hi = busy.interval()
    assert lo < busy.ratio() < hi and busy.width() > STEADY_WIDTH

    def timer(student):
        blocks = {"o": iter([10.0] * 99), "s": iter(student)}
        return lambda fn, **_: SimpleNamespace(fast_ms=next(blocks[fn()]))

    fns = [lambda: "o", lambda: "s"]
    monkeypatch.setattr(edgecnn.bench.latency, "time_calls", timer([4.0, 6.0, 3.0, *[5.0] * 96]))
    longer = time_paired(fns, batch=1, rounds=3, block_s=0.1, warmup_s=0.0, max_rounds=12)
    assert 3 < longer.rounds <= 12 and longer.width() <= STEADY_WIDTH and longer.ratio() == 2.0
    monkeypatch.setattr(edgecnn.bench.latency, "time_calls", timer([4.0, 6.0, 3.0, 7.0, 2.0, 8.0] * 9))
    capped = time_paired(fns, batch=1, rounds=3, block_s=0.1, warmup_s=0.0, max_rounds=6)
    assert capped.rounds == 6 and capped.width() > STEADY_WIDTH  # never steady: stops at the cap
    monkeypatch.setattr(edgecnn.bench.latency, "time_calls", timer([5.0] * 99))
    assert time_paired(fns, batch=1, rounds=3, block_s=0.1, warmup_s=0.0, max_rounds=12).rounds == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(speedup=1.0), "--speedup must be > 1"),
        (dict(headroom=1.0), "--headroom must be a fraction in"),
        (dict(speedup=None, latency_ms=None), "give one budget"),
        (dict(speedup=2.0, latency_ms=3.0), "give one budget"),
        (dict(runtime="onnxrt"), "unknown runtime 'onnxrt'"),
        (dict(device="gpu"), "onnxruntime runs on cpu or cuda or tensorrt, not 'gpu'"),
        (dict(runtime="torch", int8=True), "--int8 plans time int8 layers inside the model"),
        (dict(confirm_seconds=0.0), "the check and confirmation timings must be positive"),
    ],
)
def test_plan_options_are_checked(kwargs, message):
    with pytest.raises(Exception, match=message):
        PlanOptions(**kwargs).validate()


def test_an_int8_plan_aims_further_ahead_and_the_prediction_is_timed_as_long_as_the_measurement():
    """An int8 student's speed-up moved more between the plan and the end-to-end timing (OpenVINO:
    0.82-0.91 of its re-timing) than an fp32 one's, so its default headroom is larger; a given
    --headroom is kept. compress re-times its choice for as long as it will measure it."""
    from edgecnn.compress import CompressOptions
    from edgecnn.plan.api import HEADROOM, INT8_HEADROOM

    assert PlanOptions().aim_headroom == HEADROOM < INT8_HEADROOM == PlanOptions(int8=True).aim_headroom
    assert PlanOptions(int8=True, headroom=0.0).aim_headroom == 0.0
    assert CompressOptions(int8=True).plan_options().aim_headroom == INT8_HEADROOM
    opts = CompressOptions(measure_seconds=3.0, measure_rounds=8).plan_options()
    assert opts.confirm_seconds == 24.0 and CompressOptions(headroom=0.2).plan_options().aim_headroom == 0.2


# What the fp32 budget tests ask of ResNet-18 at 32x32: dispatch, not compute, dominates there, and
# one CI host's fastest candidates reached only 1.17x (this machine: 1.6-1.9x).
SPEEDUP = 1.05


def _folded(name="resnet18", size=32):
    torch.manual_seed(0)
    loaded = load_model(name, num_classes=10)
    return loaded, convert(loaded, fold_bn=True, input_size=(size, size)).model.eval()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_every_layer_is_found_in_the_runtimes_profile(runtime, tmp_path):
    _, model = _folded()
    slots = enumerate_slots(model, torch.zeros(1, 3, 32, 32))
    names = [s.name for s in slots]
    assert names[0] == "conv1" and names[-1] == "fc" and len(names) == 21
    times = profile_probe(
        probe_model(model, slots, 0), names, (3, 32, 32), get_backend(runtime), runs=3
    ).layers
    assert times.keys() == set(names) and all(times[n] > 0 for n in names), [n for n in names if not times[n]]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_int8_probes_time_every_layer_and_int8_is_faster_in_context(runtime):
    """An int8 probe is quantized after tagging; the tags survive, so every layer has an int8 time, and
    at 64x64 the int8 convs of ResNet-18's last stage cost less than fp32 in the same graph."""
    from edgecnn.plan.context import Quantized

    _, model = _folded(size=64)
    slots = enumerate_slots(model, torch.zeros(1, 3, 64, 64))
    names = [s.name for s in slots]
    backend = get_backend(runtime)
    images = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    int8 = Quantized(backend.int8_scheme("auto"), images)
    probe = probe_model(model, slots, 0)
    fp32 = profile_probe(probe, names, (3, 64, 64), backend, runs=10).layers
    q = profile_probe(probe, names, (3, 64, 64), backend, runs=10, int8=int8).layers
    assert all(q[n] > 0 for n in names), [n for n in names if not q[n]]
    last = [n for n in names if n.startswith("layer4") and "downsample" not in n]
    assert sum(q[n] for n in last) < sum(fp32[n] for n in last)


def test_fake_quant_scores_int8_as_the_scheme_computes_it():
    """Quantization error is small, not zero, and u8 (asymmetric) is finer than s8 on inputs after a
    ReLU, which use only half of s8's range."""
    from edgecnn.plan.scores import fake_quant

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(16, 32, 3, padding=1).eval()
    x = torch.relu(torch.randn(8, 16, 12, 12))
    with torch.no_grad():
        ref = conv(x)
        err = {a: float((fake_quant(conv, a)(x) - ref).norm() / ref.norm()) for a in ("s8", "u8")}
        assert torch.equal(conv(x), ref)  # the layer itself is untouched
    assert 1e-4 < err["u8"] < err["s8"] < 0.05, err


def test_an_int8_export_leaves_the_chosen_layers_in_fp32(tmp_path):
    """Mixed precision: the nodes of `int8_fp32_layers` get no Q/DQ, every other conv does."""
    import onnx

    from edgecnn.export import ExportOptions, export
    from edgecnn.export.layers import assign

    keep = ("layer1.0.conv1", "layer4.1.conv2", "fc")
    opts = ExportOptions(
        out_dir=tmp_path,
        input_size=(32, 32),
        precision="int8",
        calib="digits",
        calib_size=8,
        verify=False,
        int8_fp32_layers=keep,
    )
    (t,) = export("resnet18", opts).targets
    assert t.quantization["fp32_layers"] == list(keep) and t.quantization["fp32_nodes"] >= 3
    graph = onnx.load(t.path).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    weighted = [
        (node, layer)
        for node, layer in assign(graph, [n for n, _ in load_model("resnet18").module.named_modules() if n])
        if node.op_type in ("Conv", "Gemm")
    ]
    assert len(weighted) == 21
    for node, layer in weighted:  # an int8 conv reads dequantized int8 weights, an fp32 one its floats
        quantized = producer.get(node.input[1]) == "DequantizeLinear"
        assert quantized == (layer not in keep), (layer, node.name)


def test_tagging_keeps_the_graph_and_its_outputs(tmp_path):
    import onnx
    import onnxruntime as ort

    from edgecnn.export.onnx import export_onnx

    _, model = _folded()
    path = tmp_path / "m.onnx"
    export_onnx(model, path, input_shape=(1, 3, 32, 32), simplify=False)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    before = ort.InferenceSession(str(path)).run(None, {"input": x})[0]
    aliases = tag_onnx(path, ["layer1.0.conv1", "fc"])
    onnx.checker.check_model(str(path))
    assert aliases == {"logits": "fc"}
    np.testing.assert_array_equal(ort.InferenceSession(str(path)).run(None, {"input": x})[0], before)
    names = [n.name for n in onnx.load(str(path)).graph.node]
    assert any(n.startswith("layer1.0.conv1|") and n.endswith("/Conv") for n in names)
    assert any(n.startswith("layer1.0.conv1|") and "Relu" in n for n in names)  # inherits from its conv
    assert layer_times(
        {"fc|x": 1.0, "logits": 0.5, "layer1.0.conv1|y": 2.0, "other": 9.0}, ["fc", "layer1.0.conv1"], aliases
    ) == {
        "fc": 1.5,
        "layer1.0.conv1": 2.0,
    }


def test_the_plan_builds_a_reloadable_student(tmp_path):
    loaded, _ = _folded()
    steps = [
        {"name": "separable", "layers": {"layer1.0.conv1": 2}},
        {"name": "bottleneck", "layers": {"layer4.1.conv2": [64, 64]}},
        {"name": "lowrank", "layers": {"fc": 8, "layer3.0.downsample.0": 32}},
    ]
    student = convert_exact(loaded, steps, input_size=(32, 32))
    assert student.recipe["transforms"] == steps and student.macs_after < student.macs_before
    assert len(student.model.layer4[1].conv2) == 3 and student.model.layer4[1].bn2 is not None  # BN kept
    path = save_with_recipe(student.model, student.recipe, tmp_path / "s.safetensors")
    back = load_model_file(path)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(back.module(x), student.model(x))


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One latency cache for this module's compress runs (ResNet-18 at 32x32 in ONNX Runtime): what
    one run timed, the next reads, as on a user's machine; each test states what it measured or read."""
    return tmp_path_factory.mktemp("shared-cache")


def _run(*args, cache, cwd=None):
    return run_cli(*args, cwd=cwd, env={"EDGECNN_CACHE": str(cache)})


def test_compress_end_to_end_and_the_cli_reuses_its_latencies(tmp_path, caplog, shared_cache, monkeypatch):
    """The whole pipeline on ResNet-18 at 32x32 (random weights: its accuracy says nothing; distillation
    has its own tests). LeNet-5 is no use here: tanh, pooling and layout ops leave ~1.05x to gain. The
    weights are saved once, as a model file (10 classes, 32x32, the digits' split), so both runs
    score, choose and check the same model: the API from `--weights`, the CLI from the file alone."""
    from edgecnn.compress import CompressOptions, compress
    from edgecnn.data.digits import CLASSES
    from edgecnn.data.splits import SplitSpec
    from edgecnn.export import read_manifest
    from edgecnn.transforms import save_with_recipe
    from edgecnn.transforms.model_file import model_recipe

    out, cache = tmp_path / "out", shared_cache
    torch.manual_seed(0)
    weights = tmp_path / "r18.safetensors"
    loaded = load_model("resnet18", num_classes=10)
    header = model_recipe(loaded, (32, 32), class_names=list(CLASSES), data=SplitSpec("digits").to_dict())
    save_with_recipe(loaded.module, header, weights)
    opts = CompressOptions(
        speedup=SPEEDUP,
        input_size=(32, 32),
        distill_epochs=0,
        bn_batches=2,
        test_images=100,
        calib_images=16,
        measure_seconds=0.4,
        check_seconds=0.05,
        out_dir=out,
        cache_dir=cache / "latency",  # where the CLI's EDGECNN_CACHE below points
    )
    import edgecnn.plan.context

    confirmed = []  # rounds of each re-timing: as long as the end-to-end measurement (0.8 s a model)

    def confirm_ratio(*args, rounds, **kwargs):
        confirmed.append(rounds)
        return real_confirm(*args, rounds=rounds, **kwargs)

    real_confirm = edgecnn.plan.context.confirm_ratio
    monkeypatch.setattr(edgecnn.plan.context, "confirm_ratio", confirm_ratio)
    result = compress("resnet18", opts, weights=str(weights))
    assert confirmed and set(confirmed) == {16}
    d = json.loads(Path(result.report).read_text())
    plan = d["plan"]
    # The prediction is the chosen model itself, profiled per layer and timed whole; what the whole
    # cost beyond its layers' sum is reported (the knapsack's budget is checked against brute force
    # above). No bound on context_ms here: on a 0.6 ms model the per-layer sum and the whole timing
    # come from different seconds of a shared host (CI once saw context 0.72 ms on a 0.62 ms model).
    # A plan that may prune was measured against its rivals at the same request (the plan without
    # pruning, uniform pruning, where they met it), each recovered alike; the lowest validation loss
    # is `plan`.
    choice = result.structure
    if choice is not None:
        losses = [c.val.loss for c in choice.contenders]
        assert choice.val_images > 0 and all(0 < v < 100 for v in losses) and d["structure"]
        shipped = choice.of(choice.shipped)
        assert shipped.test_top1 == result.top1[1] and shipped.plan is result.plan
        assert shipped.val.loss == min(losses) and choice.contenders[0].kind == "plan"
        assert (result.plan.uniform is not None) == (choice.shipped == "uniform")
    # the knapsack's plan (shipped, or measured against its rivals), its prediction as it adds up
    p = choice.contenders[0].plan if choice is not None else result.plan
    chosen = sum(x.latency_after_ms for x in p.layers)
    fixed = p.original_ms - sum(x.latency_before_ms for x in p.layers)
    assert p.predicted_ms > 0 and p.predicted_ms == pytest.approx(fixed + chosen + p.context_ms)
    assert p.calibration_images == 16
    swapped = [layer for layer in p.layers if layer.kind != "keep"]
    assert swapped  # the knapsack itself is checked against brute force above
    assert all(layer.error == 0 for layer in p.layers if layer.kind == "keep")
    # Timed whole, the choice meets the target, or the plan says none of the checked ones did (a
    # 1 ms model on a shared host can lose 5% to a noisy second).
    met = plan["predicted_ms"] <= plan["target_ms"] + 1e-6
    timed = plan["latencies_measured"] + plan["latencies_cached"]
    assert timed > 0 and (met or "no checked choice met the target" in caplog.text)
    assert plan["target_ms"] == pytest.approx(plan["original_ms"] / SPEEDUP)
    assert (
        d["original_ms"] > 0 and d["student_ms"] > 0 and d["test_set"] == "100 images from digits:test:first"
    )
    assert all(0 <= t <= 100 for t in d["top1"]) and d["macs"][1] < d["macs"][0]
    assert d["measured_speedup"] == pytest.approx(d["original_ms"] / d["student_ms"])
    student = load_model_file(d["student_path"])
    chosen = {layer["kind"] for layer in plan["layers"]} - {"keep"}
    assert chosen and {t["name"] for t in student.recipe["transforms"]} == chosen
    assert student.num_classes == 10  # as many outputs as the data has classes
    for artifact in d["artifacts"].values():
        assert Path(artifact).is_file() and Path(artifact + ".json").is_file()
        # verified on the held-out test images as well as on seeded noise (64: export's check size)
        checks = {p["inputs"]: p["passed"] for p in read_manifest(artifact)["parity"]}
        assert checks == {"seeded:8": True, "images:64": True}, checks
    args = ["compress", str(weights), "--speedup", str(SPEEDUP)]  # no --input-size, --data: the file's
    args += ["--distill-epochs", "0", "--no-rivals"]  # the knapsack's plan, from the cache, alone
    args += ["--calib-images", "16", "--test-images", "100", "--duration", "0.3", "-o", str(out)]
    r = _run(*args, cache=cache)  # the output exists, no --force
    assert r.returncode == 2 and "--force" in r.stderr
    Path(d["student_path"]).unlink()  # the artifacts and the report still stand: still refused
    r = _run(*args, cache=cache)
    assert r.returncode == 2 and "already exists; pass --force" in r.stderr
    assert Path(d["artifacts"]["original"]).is_file()
    r = _run(*args, "--force", cache=cache)
    assert r.returncode == 0, r.stderr[-3000:]
    # --no-rivals: the rerun ships the knapsack's plan, which the API run's report keeps either way
    rerun = json.loads(Path(result.report).read_text())
    assert rerun["structure"] is None and "each structure recovered alike" not in r.stdout
    assert "per-layer choice" in r.stdout and "predicted" in r.stdout and "test top-1" in r.stdout
    plan = d["structure"]["contenders"][0]["plan"] if choice is not None else plan
    again = rerun["plan"]
    # the same path through the same probes and checks, all of them from the cache this time (timed
    # seconds ago, so a plan that misses by them does not time them again), but for any timed while
    # other processes held a core, where the machine is quiet now
    retimed = again["latencies_retimed"]
    assert again["latencies_measured"] == retimed
    assert f"{rerun['plan']['latencies_measured']} latencies measured" in r.stdout  # the shipped one's
    assert again["latencies_cached"] + retimed == plan["latencies_measured"] + plan["latencies_cached"]
    if not retimed:
        assert [x["choice"] for x in again["layers"]] == [x["choice"] for x in plan["layers"]]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--speedup", "1"], "--speedup must be > 1"),
        (["--speedup", "0.5"], "--speedup must be > 1"),
        (["--runtime", "tensorrt"], "tensorrt is not installed"),
        (["--data", "FEW"], "FEW has 4 training images"),
        (["--include", "nothing*"], "no layer or channel group of the model among the selected layers"),
        (["--candidates", "bogus"], "unknown --candidates kind 'bogus'"),
        (["--candidates", "prune", "--include", "fc"], "no layer or channel group of the model among"),
        (["--speedup", "50"], "out of reach"),
        (["--test-images", "0"], "--test-images must be positive"),
        (["--lr", "0"], "--lr must be positive"),
        (["--duration", "0"], "--duration must be positive"),
        (["--grid", "bogus=1"], "unknown --grid kind 'bogus'"),
        (["--baseline", "bf16"], "unknown baseline 'bf16'"),
        (["--grid", "bottleneck=2"], "--grid bottleneck=2: bottleneck takes rank ratios in (0, 1]"),
        (["--grid", "separable="], "separable takes channel multipliers T >= 1, e.g. separable=1,2,4"),
        (["--grid", "lowrank=a"], "lowrank takes rank ratios in (0, 1)"),
    ],
)
def test_compress_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    if "tensorrt" in args and available("tensorrt"):
        pytest.skip("TensorRT is installed here")
    from PIL import Image

    for i in range(6):  # 6 images in 2 classes: 4 for training after the test and validation splits
        folder = tmp_path / "FEW" / f"c{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((32, 32), i * 40, np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "out"
    r = _run(
        "compress",
        "lenet5",
        "--distill-epochs",
        "0",
        "-o",
        str(out),
        *args,
        cache=tmp_path / "c",
        cwd=tmp_path,
    )
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    # a backend the machine lacks exits 1, as in export and bench; the user's input, 2
    assert r.returncode == (1 if "tensorrt" in args else 2), r.stderr[-2000:]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in r.stderr
    assert not out.exists()


def test_a_students_table_speedup_is_at_the_precision_compress_timed_it():
    """The pipeline's line for a student planned against OpenVINO's bf16 default compares the
    table's bf16 rows (never f32-pinned rows against a bf16 plan); ONNX Runtime's, the fp32 rows."""
    from types import SimpleNamespace

    from edgecnn.bench.latency import LatencyStats
    from edgecnn.bench.schema import BenchRow, BenchRun
    from edgecnn.pipeline import Variant, _speedup

    def row(source, runtime, precision, ms):
        return BenchRow(
            "r",
            f"{source} {precision}",
            runtime,
            "cpu",
            precision,
            1,
            latency=LatencyStats.from_times([ms / 1e3], batch=1, warmup_s=0.0),
            source=source,
        )

    rows = [
        row(name, runtime, precision, ms)
        for name, scale in (("original", 1.0), ("student", 0.5))
        for runtime, precision, ms in (
            ("openvino", "fp32", 2.0 * scale**0.1),  # f32-pinned: the student barely gains there
            ("openvino", "bf16", 1.0 * scale),
            ("openvino", "int8", 0.8 * scale),
            ("onnxruntime", "fp32", 3.0 * scale),
        )
    ]
    run = BenchRun({"label": "m"}, {}, rows)

    def variant(name, runtime, float_math):
        model = SimpleNamespace(path=f"x/{name}.safetensors")
        return Variant(model, 1, 1, runtime=runtime, float_math=float_math)

    original = variant("original", None, None)
    assert _speedup(run, original, variant("student", "openvino", "bf16")) == pytest.approx(2.0)
    assert _speedup(run, original, variant("student", "openvino", "fp32")) == pytest.approx(2**0.1)
    assert _speedup(run, original, variant("student", "onnxruntime", None)) == pytest.approx(2.0)
    assert (
        _speedup(BenchRun({}, {}, rows[:1] + rows[4:5]), original, variant("student", "openvino", "bf16"))
        is None
    )


def test_pipeline_with_a_speedup_makes_one_compressed_student_per_runtime(
    tmp_path, monkeypatch, shared_cache
):
    """`pipeline --speedup` (what `make demo` runs): the students come from compress, one per runtime
    that can plan, and the table's fp32 rows give each one's speed-up on its runtime. A small image
    folder keeps training short; speed is not asserted (a shared 2-core machine; the demo shows it)."""
    from PIL import Image

    from edgecnn.pipeline import PipelineOptions, run_pipeline

    monkeypatch.setenv("EDGECNN_CACHE", str(shared_cache))
    rng = np.random.default_rng(0)
    for c in range(10):  # ten classes: the plan's probes are the end-to-end test's, from the shared cache
        folder = tmp_path / "shapes" / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(8):
            img = rng.integers(0, 60, (32, 32)).astype(np.uint8)
            img[c * 3 : c * 3 + 3, :] += 150  # a bright band whose position is the class
            Image.fromarray(img).save(folder / f"{i}.png")
    opts = PipelineOptions(
        data=str(tmp_path / "shapes"),
        input_size=(32, 32),
        epochs=1,
        distill_epochs=0,
        batch_size=16,
        runtimes=("torch", "onnxruntime"),
        int8=False,
        speedup=SPEEDUP,
        seconds=0.1,  # the bench rows and the plan's checks: speed is not asserted here
        memory=False,
        out_dir=tmp_path / "p",
    )
    messages = []
    result = run_pipeline("resnet18", opts, on_message=messages.append)
    assert set(result.variants) == {"original", "compressed-onnxruntime"}  # torch cannot plan in context
    v = result.variants["compressed-onnxruntime"]
    assert Path(v.path).name == "resnet18.compressed-onnxruntime.safetensors"
    assert v.mac_reduction > 1 and v.requested_speedup == SPEEDUP and v.measured_speedup > 0
    assert v.planned_speedup == pytest.approx(SPEEDUP) and any(
        "compressed for onnxruntime" in m for m in messages
    )
    rows = {(r.variant, r.runtime): r for r in result.run.rows}
    assert set(rows) == {
        (f"resnet18.{name} fp32", runtime)
        for name in ("original", "compressed-onnxruntime")
        for runtime in ("torch", "onnxruntime")
    }
    ms = {
        n: rows[(f"resnet18.{n} fp32", "onnxruntime")].latency.median_ms
        for n in ("original", "compressed-onnxruntime")
    }
    assert v.bench_speedup == pytest.approx(ms["original"] / ms["compressed-onnxruntime"])
    # the student's artifact for its runtime is compress's own, verified there: exported once
    student_row = rows[("resnet18.compressed-onnxruntime fp32", "onnxruntime")]
    assert Path(student_row.artifact).parent.name == "compress-onnxruntime"
    assert not list((tmp_path / "p" / "artifacts").rglob("resnet18.compressed-onnxruntime.onnx"))
    # every row scores the 16 test images the reference's training held out (of 80: 20%)
    assert {r.accuracy.images for r in rows.values()} == {16}
    assert (
        result.reference["test_set"].startswith("16 images from")
        and "seeded 20% split" in (result.reference["test_set"])
    )
    assert v.table_top1 == rows[("resnet18.compressed-onnxruntime fp32", "torch")].accuracy.top1


def test_a_pipeline_asked_too_much_compresses_for_what_this_machine_reaches(monkeypatch, tmp_path):
    """Out of reach after training: compress again for 97% of the best reachable, and say so; a best
    under 1.02x makes no student (a warning, not the end of the pipeline)."""
    from types import SimpleNamespace

    import edgecnn.compress
    from edgecnn.errors import OutOfReachError
    from edgecnn.pipeline import PipelineOptions, _compress_within_reach, _Hooks

    def fake(best):
        def compress(model, co, **kw):
            asked.append(co.speedup)
            if len(asked) == 1:
                raise OutOfReachError("the budget is out of reach", best)
            return "student"

        return compress

    opts = PipelineOptions(speedup=3.0, out_dir=tmp_path)
    for best, made, calls in ((1.4, "student", [3.0, 1.358]), (1.01, None, [3.0])):
        asked, said = [], []
        monkeypatch.setattr(edgecnn.compress, "compress", fake(best))
        out = SimpleNamespace(out_dir=tmp_path)
        made_here = _compress_within_reach(
            "resnet18", None, "onnxruntime", (32, 32), opts, out, _Hooks(said.append)
        )
        assert made_here == made
        assert asked == calls
    assert said == [] and asked == [3.0]
    monkeypatch.setattr(edgecnn.compress, "compress", fake(1.4))
    asked, said = [], []
    _compress_within_reach("resnet18", None, "onnxruntime", (32, 32), opts, out, _Hooks(said.append))
    assert said == ["3.0x is out of reach on onnxruntime here (1.40x at best): compressing for 1.358x"]


def test_compress_int8_ships_the_mixed_precision_it_planned(tmp_path, shared_cache):
    """`compress --int8` end to end: each layer's precision comes from the plan, the student ships as
    one Q/DQ model in ONNX Runtime's fast scheme (u8) whose manifest names the layers left in fp32,
    and the prediction is that very model, profiled and timed whole. Random weights: agreement is not
    checked."""
    import onnx

    from edgecnn.compress import CompressOptions, compress
    from edgecnn.export import read_manifest
    from edgecnn.plan import Grid

    opts = CompressOptions(
        speedup=1.3,
        int8=True,
        input_size=(32, 32),
        distill_epochs=0,
        refit=False,  # the end-to-end test runs the refit; the suite is near its 10 minutes
        bn_batches=1,
        test_images=50,
        calib_images=16,
        calib_size=16,
        measure_seconds=0.3,
        check_seconds=0.05,
        verify=False,
        grid=Grid(separable=(1,), bottleneck=(0.25,), lowrank=(0.25,)),
        out_dir=tmp_path / "out",
        cache_dir=shared_cache / "latency",
    )
    result = compress("resnet18", opts)
    plan = result.plan
    assert plan.int8_activations == "u8"
    assert {layer.precision for layer in plan.layers} <= {"fp32", "int8"}
    assert any(layer.precision == "int8" for layer in plan.layers)
    student = result.artifacts["student"]
    assert student.endswith("resnet18.compressed-onnxruntime-int8.int8u8.onnx")
    ops = {n.op_type for n in onnx.load(student).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    q = read_manifest(student)["quantization"]
    assert q.get("fp32_layers", []) == plan.fp32_layers()
    assert q["activations"].startswith("uint8")
    assert plan.predicted_ms == pytest.approx(
        plan.original_ms
        - sum(x.latency_before_ms for x in plan.layers)
        + sum(x.latency_after_ms for x in plan.layers)
        + plan.context_ms
    )
    # the rival an int8 plan must beat, made, timed in the same rounds and scored as shipped
    plain = result.artifacts["plain_int8"]
    assert plain.endswith("resnet18.32x32.int8u8.onnx") and read_manifest(plain)["precision"] == "int8"
    assert "fp32_layers" not in read_manifest(plain)["quantization"]
    assert (
        result.plain_int8_ms > 0
        and result.speedup_over_plain_int8 == result.plain_int8_ms / result.student_ms
    )
    assert all(0 <= t <= 100 for t in result.int8_top1)
    report = json.loads(Path(result.report).read_text())
    assert report["speedup_over_plain_int8"] == pytest.approx(result.speedup_over_plain_int8)
    from edgecnn.cli.compress import _baseline_lines

    faster = dataclasses.replace(result, plain_int8_ms=2 * result.student_ms, int8_top1=(90.0, 90.2))
    slower = dataclasses.replace(faster, plain_int8_ms=0.9 * result.student_ms)
    worse = dataclasses.replace(faster, int8_top1=(89.0, 90.0))
    assert [r.shipped for r in (faster, slower, worse)] == ["student", "plain_int8", "plain_int8"]
    assert "2.00x; int8 artifacts' test top-1 90.00% vs 90.20% (plain)" in _baseline_lines(faster)[-1]
    assert "ship it" not in "".join(_baseline_lines(faster))
    assert (
        _baseline_lines(slower)[-1]
        == f"warning: plain INT8 of the original is as fast here, so ship it, not the student: {plain}"
    )
    assert "is more accurate here" in _baseline_lines(worse)[-1]
    assert report["shipped_artifact"] == result.artifacts[result.shipped]


def test_the_rank_grid_is_an_option():
    """`--grid KIND=...` replaces that kind's ranks (sorted, once each) and keeps the others; the
    planner's candidates follow it."""
    from edgecnn.plan import Grid

    grid = Grid.parse(["bottleneck=0.25,0.0625,0.25", "multiple_of=16"])
    assert grid.bottleneck == (0.0625, 0.25) and grid.multiple_of == 16
    assert grid.separable == Grid().separable and grid.lowrank == Grid().lowrank
    model, x = load_model("resnet18").module.eval(), torch.zeros(1, 3, 32, 32)

    def bottlenecks(grid):
        slots = enumerate_slots(model, x, grid, include=("layer4.1.conv2",))
        return [c.value for s in slots for c in s.candidates if c.kind == "bottleneck"]

    assert len(bottlenecks(Grid())) == len(Grid().bottleneck)
    assert bottlenecks(Grid.parse(["bottleneck=0.0625"])) == [[32, 32]]  # 512 channels x 1/16


def test_the_original_is_never_the_chosen_compact_model():
    """A choice that keeps every layer in fp32 is the original: however its whole-model timing comes
    out on a noisy host, it is not what a speed-up target is met with. Keeping in int8 is a change."""
    from edgecnn.plan.api import _unchanged

    def cand(kind, precision="fp32"):
        return Candidate(kind, None, 1, 1, 0.0, None, precision=precision)

    slots = [
        Slot(f"l{i}", None, (8, 4, 4), [cand("keep"), cand("separable"), cand("keep", "int8")])
        for i in range(2)
    ]
    assert _unchanged(slots, [0, 0])
    assert not _unchanged(slots, [0, 1]) and not _unchanged(slots, [2, 0])


def test_an_int8_student_that_fails_its_check_runs_its_most_harmful_layers_in_fp32(
    tmp_path, lenet_weights, caplog
):
    """A trained LeNet-5 whose last layer cannot survive per-row int8 weights (one weight per row
    1000x the rest, on an input that is constant, so fp32 is unchanged) fails its int8 check; compress
    ranks the int8 layers by how far each moves the logits, exports again with the worst in fp32, and
    the artifact then agrees with PyTorch on the held-out digits."""
    import numpy as np

    from edgecnn.compress import quantize_with_accuracy_control
    from edgecnn.data import Preprocess, open_dataset
    from edgecnn.export import ExportOptions, read_manifest
    from edgecnn.plan.sensitivity import int8_sensitivity
    from edgecnn.transforms import load_model_file, load_source, save_with_recipe
    from edgecnn.transforms.model_file import model_recipe

    loaded = load_source("lenet5", str(lenet_weights))
    fc3, fc5 = loaded.module.classifier[3], loaded.module.classifier[5]
    with torch.no_grad():
        fc3.weight[0], fc3.bias[0] = 0.0, 10.0  # feature 0 is tanh(10): a constant
        c = torch.linspace(-1, 1, 10)
        fc5.weight[:, 0] += 1000 * c
        fc5.bias -= 1000 * c * torch.tanh(torch.tensor(10.0))
    path = save_with_recipe(loaded.module, model_recipe(loaded, (32, 32)), tmp_path / "l5.safetensors")

    layers = ["features.0", "features.3", "classifier.1", "classifier.3", "classifier.5"]
    train = open_dataset("digits", Preprocess.for_model(loaded.card), split="train")
    batches = [np.stack([train[i][0] for i in range(j, j + 16)]) for j in range(0, 64, 16)]
    ranked = int8_sensitivity(loaded.module, layers, batches, "u8")
    assert ranked[0][0] == "classifier.5" and ranked[0][1] > 10 * ranked[1][1]
    eo = ExportOptions(
        targets=("onnx",), out_dir=tmp_path / "out", input_size=(32, 32), precision="int8", calib="digits"
    )
    with caplog.at_level("WARNING"):
        target, back = quantize_with_accuracy_control(load_model_file(path), eo, layers, batches, "u8")
    assert "the int8 student failed its check against PyTorch (images:" in caplog.text
    assert back == ["classifier.5"]
    manifest = read_manifest(target.path)
    assert target.ok and manifest["quantization"]["fp32_layers"] == ["classifier.5"]
    images = next(p for p in manifest["parity"] if p["inputs"].startswith("images"))
    assert images["passed"] and images["top1_agreement"] >= 0.9 and images["images"] >= 50


def test_a_distillation_that_diverges_starts_again_from_the_built_student_at_a_lower_lr(
    monkeypatch, lenet_weights, caplog
):
    """The first distillation's loss goes infinite after it scrambled the student; compress warns,
    restores the student as built and distills it again at a quarter of the lr, which recovers it."""
    import edgecnn.train
    from edgecnn.compress import CompressOptions
    from edgecnn.compress.recovery import recover
    from edgecnn.data import Preprocess
    from edgecnn.errors import DivergedError
    from edgecnn.plan import Plan
    from edgecnn.plan.api import LayerChoice
    from edgecnn.train.api import load_splits
    from edgecnn.transforms import load_source

    loaded = load_source("lenet5", str(lenet_weights))
    choice = LayerChoice("classifier.3", "lowrank 16", "lowrank", 16, 1.0, 0.5, 0.1, 1, 1)
    plan = Plan("onnxruntime", "cpu", None, 1, (1, 32, 32), 5.0, 2.5, 2.5, [choice], 64, 0, 0, "u8")
    splits = load_splits("digits", Preprocess.for_model(loaded.card))
    real, calls = edgecnn.train.distill, []

    def distill(teacher, student, *args, **kw):
        calls.append((args[1].train.lr, [p.clone() for p in student.model.parameters()]))
        if len(calls) == 1:
            with torch.no_grad():
                for p in student.model.parameters():
                    p.mul_(1e3)
            raise DivergedError("training diverged (loss inf) at epoch 1; lower --lr")
        return real(teacher, student, *args, **kw)

    monkeypatch.setattr(edgecnn.train, "distill", distill)
    opts = CompressOptions(distill_epochs=1, input_size=(32, 32))
    with caplog.at_level("WARNING", logger="edgecnn"):
        _, (teacher_top1, top1), _, _ = recover(
            loaded, plan, (32, 32), splits, [], opts, lambda *a: None, None, None
        )
    assert [lr for lr, _ in calls] == [opts.lr, opts.lr / 4]
    assert all(torch.equal(a, b) for a, b in zip(calls[0][1], calls[1][1], strict=True))
    assert "distilling again from the built student at --lr 0.00125" in caplog.text
    assert top1 > 80 and teacher_top1 - top1 < 5
