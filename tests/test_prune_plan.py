"""Channel pruning as a planner candidate: groups inside blocks as composite slots, timed in context,
chosen in the same knapsack as the swaps, rebuilt from the recipe."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torchvision

from edgecnn.plan.groups import compose, find_composites

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
KEEP = (0.25, 0.5, 0.75)


def _folded(ctor, size=32):
    from edgecnn.transforms import fold_bn

    torch.manual_seed(0)
    model = ctor(num_classes=5).eval()
    x = torch.randn(1, 3, size, size)
    folded, _ = fold_bn(model, example=x)
    return folded.eval(), x


def test_resnet_groups_inside_blocks_become_composites_and_streams_do_not():
    r18, x = _folded(torchvision.models.resnet18)
    comps = find_composites(r18, x, KEEP)
    assert [c.convs for c in comps][:2] == [
        ["layer1.0.conv1", "layer1.0.conv2"],
        ["layer1.1.conv1", "layer1.1.conv2"],
    ]
    assert len(comps) == 8  # one per BasicBlock; the residual streams reach more than 3 convs
    kept = [len(next(iter(p.value.values()))) for p in comps[0].prunes]
    assert kept == [16, 32, 48]  # 64 channels at 1/4, 1/2, 3/4
    r50, x = _folded(torchvision.models.resnet50)
    comps = find_composites(r50, x, KEEP)
    assert len(comps) == 16 and all(len(c.convs) == 3 and len(c.roots) == 2 for c in comps)  # merged


@pytest.mark.parametrize("ctor", [torchvision.models.mobilenet_v2, torchvision.models.densenet121])
def test_depthwise_and_dense_models_prune_and_export_to_an_onnx_that_matches(tmp_path, ctor):
    import numpy as np
    import onnxruntime as ort

    from edgecnn.export.onnx import export_onnx

    model, x = _folded(ctor)
    comps = find_composites(model, x, KEEP)
    assert comps
    if ctor is torchvision.models.mobilenet_v2:  # expand -> depthwise -> project: one group each
        assert any(len(c.convs) == 3 and model.get_submodule(c.convs[1]).groups > 1 for c in comps)
    pruned = model
    import copy

    pruned = copy.deepcopy(model)
    for comp in comps:
        for name, part in comp.prunes[0].parts.items():
            pruned.set_submodule(name, part)
    export_onnx(pruned, tmp_path / "m.onnx", input_shape=(1, 3, 32, 32))
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = pruned(x).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())


def test_a_composite_offers_its_prunes_and_every_mix_of_its_convs_candidates():
    from edgecnn.plan.candidates import Candidate, Slot

    model, x = _folded(torchvision.models.resnet18)
    comp = find_composites(model, x, KEEP)[0]
    comp.base_ms = {n: 1.0 for n in comp.convs}
    for i, p in enumerate(comp.prunes):
        p.latency_ms, p.error = 0.5 + 0.2 * i, 0.3 - 0.1 * i

    def slot(name, cands):
        s = Slot(
            name,
            None,
            (64, 8, 8),
            [Candidate(k, v, 1, 1, 0.0, None, latency_ms=ms, error=e) for k, v, ms, e in cands],
        )
        return s

    a = slot(
        comp.convs[0], [("keep", None, 1.0, 0.0), ("separable", 2, 0.6, 0.4), ("separable", 1, 0.7, 0.5)]
    )
    b = slot(comp.convs[1], [("keep", None, 1.0, 0.0), ("bottleneck", [16, 16], 0.4, 0.6)])
    other = slot("fc", [("keep", None, 0.1, 0.0), ("lowrank", 8, 0.05, 0.2)])
    units = compose([a, b, other], [comp])
    unit = next(u for u in units if u.members)
    kinds = [c.kind for c in unit.candidates]
    assert kinds[0] == "keep" and kinds.count("prune") == 3
    mixes = [c for c in unit.candidates if c.kind == "mix"]
    # separable 1 is slower and worse than separable 2 (dominated): never part of a mix
    assert len(mixes) == 3 and all("separable 1" not in c.label for c in mixes)
    both = next(c for c in mixes if len(c.value) == 2)
    assert both.latency_ms == pytest.approx(1.0) and both.error == pytest.approx(1.0)
    assert unit.keep.latency_ms == pytest.approx(2.0)
    assert any(u.name == "fc" for u in units)


def test_a_plan_prunes_rebuilds_reloads_and_a_second_plan_times_nothing(tmp_path):
    from edgecnn.plan import PlanOptions, make_plan
    from edgecnn.plan.candidates import Grid
    from edgecnn.transforms import convert_exact, load_model_file, save_converted
    from edgecnn.zoo import load_model

    loaded = load_model("resnet18", num_classes=5)
    model, x = _folded(lambda num_classes: loaded.module)
    batches = [torch.randn(8, 3, 32, 32).numpy() for _ in range(2)]
    grid = Grid(prune=KEEP).with_candidates("prune")
    opts = PlanOptions(
        runtime="onnxruntime",
        speedup=1.3,
        grid=grid,
        cache_dir=tmp_path,
        check_seconds=0.1,
        confirm_seconds=0.3,
    )
    plan = make_plan(model, (3, 32, 32), batches, opts)
    pruned = [layer for layer in plan.layers if layer.kind == "prune"]
    assert pruned and all(layer.kind in ("keep", "prune") for layer in plan.layers)
    assert plan.swapped() == []
    steps = plan.transforms()
    assert steps[0]["name"] == "prune" and set(steps[0]["groups"]) == {
        layer.name.split("+")[0] for layer in pruned
    }
    student = convert_exact(loaded, steps, input_size=(32, 32))
    assert student.macs_after < student.macs_before
    path = save_converted(student, tmp_path / "s.safetensors")
    again = load_model_file(path)
    with torch.no_grad():
        assert torch.equal(again.module.eval()(x), student.model.eval()(x))
    second = make_plan(model, (3, 32, 32), batches, opts)
    assert second.latencies_measured == 0 and second.latencies_cached > 0


def test_a_pruned_student_distills_with_feature_reconstruction_of_its_unchanged_outputs():
    """The layers a cut narrows have no teacher counterpart; the convs that only lost inputs do."""
    from edgecnn.train import DistillOptions, TrainOptions, distill
    from edgecnn.train.distillation import swapped_layers
    from edgecnn.transforms import convert_exact
    from edgecnn.zoo import load_model

    loaded = load_model("resnet18", num_classes=10)
    step = {"name": "prune", "groups": {"layer1.0.conv1": list(range(0, 64, 2))}}
    student = convert_exact(loaded, [step], input_size=(32, 32))
    assert swapped_layers(student.recipe) == ["layer1.0.conv2"]
    train = TrainOptions(epochs=1, max_steps=3, batch_size=16, lr=0.005, feature_steps=2)
    result = distill(loaded, student, "digits", DistillOptions(train=train))
    assert result.student_test_top1 >= 0


def test_uniform_pruning_rivals_a_plan_at_the_least_ratio_that_meets_its_request(monkeypatch, tmp_path):
    """A bisection over the ratios finds the least that meets the request, as timed; none: no rival."""
    import edgecnn.plan.uniform as uniform
    from edgecnn.plan import PlanOptions
    from edgecnn.plan.api import Plan

    model, _ = _folded(torchvision.models.resnet18)
    plan = Plan("onnxruntime", "cpu", None, 1, (3, 32, 32), 10.0, 5.0, 4.8, [], 16, 0, 0)
    tried = []

    def timed(model, ratio, example, plan, table, reference, rounds):
        tried.append(ratio)
        return 10.0 * (1 - ratio), {"conv1": (64, round(64 * (1 - ratio)))}  # 0.5 meets 5 ms

    monkeypatch.setattr(uniform, "_time_uniform", timed)
    opts = PlanOptions(runtime="onnxruntime", speedup=2.0, cache_dir=tmp_path)
    rival = uniform.uniform_plan(model, plan, opts)
    assert rival.uniform == 0.5 and rival.predicted_ms == 5.0 and len(tried) <= uniform.STEPS
    assert rival.transforms() == [{"name": "prune", "groups": {"conv1": 32}}] and rival.swapped() == []
    slow = dataclasses.replace(plan, target_ms=1.0)  # 0.7 of the channels runs 3 ms: out of reach
    assert uniform.uniform_plan(model, slow, opts) is None


@pytest.mark.parametrize("better", ["plan", "no prune", "uniform"])
def test_the_student_with_the_lowest_validation_loss_ships_and_each_is_reported(monkeypatch, better):
    from types import SimpleNamespace

    import edgecnn.compress.recovery as recovery
    import edgecnn.compress.rival as rival_module
    from edgecnn.plan.api import Plan

    plan = Plan("onnxruntime", "cpu", None, 1, (3, 32, 32), 10.0, 5.0, 4.8, [], 16, 0, 0)
    swaps = dataclasses.replace(plan, predicted_ms=4.7)
    rival = dataclasses.replace(plan, predicted_ms=4.9, uniform=0.4)
    plans = {"plan": plan, "no prune": swaps, "uniform": rival}
    made = {id(p): kind for kind, p in plans.items()}
    test = {"plan": 96.0, "no prune": 95.5, "uniform": 96.5}

    def recover(loaded, candidate, *args):
        name = made[id(candidate)]
        return SimpleNamespace(model=name), (97.0, test[name]), "test", []

    losses = {"plan": 0.3, "no prune": 0.3, "uniform": 0.3, better: 0.2}
    monkeypatch.setattr(recovery, "recover", recover)
    monkeypatch.setattr(rival_module, "_scored", lambda model, data: rival_module.Scored(90.0, losses[model]))
    splits = SimpleNamespace(val=[0] * 40)
    others = [("no prune", swaps), ("uniform", rival)]
    shipped, (student, top1, *_), choice = rival_module.recover_best(
        None, plan, others, (32, 32), splits, [], None, lambda *a: None
    )
    assert choice.shipped == better and shipped is plans[better] and student.model == better
    assert [c.kind for c in choice.contenders] == ["plan", "no prune", "uniform"]
    assert [c.test_top1 for c in choice.contenders] == [96.0, 95.5, 96.5] and top1[1] == test[better]
    assert choice.of("uniform").label == "uniform pruning 40%" and choice.val_images == 40
    d = choice.to_dict()
    assert d["shipped"] == better and [c["planned_ms"] for c in d["contenders"]] == [4.8, 4.7, 4.9]
    assert d["contenders"][2]["val"] == {"top1": 90.0, "loss": 0.3 if better != "uniform" else 0.2}
    assert d["contenders"][1]["plan"] == swaps.to_dict()
    from edgecnn.cli.compress import _structure_lines

    lines = _structure_lines(choice)  # what compress prints: one row per student, within 80 columns
    rows = {line.split("  ")[1].strip(): line for line in lines[2:]}
    assert list(rows) == ["the plan", "the plan without pruning", "uniform pruning 40%"]
    assert [r.endswith("shipped") for r in rows.values()] == [k == better for k in plans]
    assert "40 validation images" in lines[0] and max(len(line) for line in lines[1:]) <= 80


def test_a_rival_student_that_diverges_is_left_out(monkeypatch):
    from types import SimpleNamespace

    import edgecnn.compress.recovery as recovery
    import edgecnn.compress.rival as rival_module
    from edgecnn.errors import DivergedError
    from edgecnn.plan.api import Plan

    plan = Plan("onnxruntime", "cpu", None, 1, (3, 32, 32), 10.0, 5.0, 4.8, [], 16, 0, 0)
    swaps = dataclasses.replace(plan, predicted_ms=4.7)
    rival = dataclasses.replace(plan, uniform=0.4)

    def recover(loaded, candidate, *args):
        if candidate is not plan:
            raise DivergedError("loss is nan")
        return SimpleNamespace(model="plan"), (97.0, 96.0), "test", []

    monkeypatch.setattr(recovery, "recover", recover)
    monkeypatch.setattr(rival_module, "_scored", lambda model, data: rival_module.Scored(90.0, 0.2))
    shipped, made, choice = rival_module.recover_best(
        None,
        plan,
        [("no prune", swaps), ("uniform", rival)],
        (32, 32),
        SimpleNamespace(val=[0] * 40),
        [],
        None,
        lambda *a: None,
    )
    assert shipped is plan and made[0].model == "plan" and choice is None


def test_the_plan_without_pruning_rivals_a_plan_that_prunes_where_it_meets_the_request(monkeypatch):
    """Made again with every kind but pruning; left out where it misses the request or is out of
    reach, and not made at all for a plan that prunes nothing (the same plan)."""
    from types import SimpleNamespace

    import edgecnn.compress.rival as rival_module
    import edgecnn.plan as plan_module
    import edgecnn.plan.uniform as uniform
    from edgecnn.compress import CompressOptions
    from edgecnn.errors import BadArgumentError, OutOfReachError
    from edgecnn.plan.api import LayerChoice, Plan

    pruned = LayerChoice("layer1.0.conv1", "prune 32/64", "prune", {"layer1.0.conv1": 32}, 1, 0.5, 0.1, 2, 1)
    plan = Plan("onnxruntime", "cpu", None, 1, (3, 32, 32), 10.0, 5.0, 4.8, [pruned], 16, 0, 0)
    rival = dataclasses.replace(plan, uniform=0.4)
    grids, outcome = [], {}

    def make_plan(model, shape, batches, options, on_progress=None):
        grids.append(options.grid.kinds)
        on_progress("scoring candidates on calibration images", 1, 2)
        if isinstance(outcome["ms"], Exception):
            raise outcome["ms"]
        return dataclasses.replace(plan, layers=[], predicted_ms=outcome["ms"])

    monkeypatch.setattr(plan_module, "make_plan", make_plan)
    monkeypatch.setattr(uniform, "uniform_plan", lambda *a, **k: rival)
    opts, splits, seen = CompressOptions(), SimpleNamespace(val=[0] * 40), []
    progress = lambda stage, done, total: seen.append(stage)  # noqa: E731
    outcome["ms"] = 4.9
    found = rival_module.rivals(None, plan, [], splits, opts, progress)
    assert [k for k, _ in found] == ["no prune", "uniform"] and found[0][1].predicted_ms == 4.9
    assert grids == [("separable", "bottleneck", "lowrank")]
    assert seen == ["scoring candidates on calibration images (without pruning)"]
    outcome["ms"] = 5.1  # misses the request: only uniform pruning
    assert [k for k, _ in rival_module.rivals(None, plan, [], splits, opts, progress)] == ["uniform"]
    for error in (OutOfReachError("out of reach", 1.5), BadArgumentError("no layer to swap")):
        outcome["ms"] = error
        assert [k for k, _ in rival_module.rivals(None, plan, [], splits, opts, progress)] == ["uniform"]
    swaps_only = dataclasses.replace(plan, layers=[])
    assert [k for k, _ in rival_module.rivals(None, swaps_only, [], splits, opts, progress)] == ["uniform"]
    assert len(grids) == 4  # the plan that prunes nothing was not made again
    assert rival_module.rivals(None, plan, [], SimpleNamespace(val=[]), opts, progress) == []
    assert (
        rival_module.rivals(None, plan, [], splits, dataclasses.replace(opts, rivals=False), progress) == []
    )
