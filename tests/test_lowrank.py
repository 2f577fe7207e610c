"""Low-rank split of 1x1 convs and Linear layers: exact at full rank, MACs as claimed, reloadable."""

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from edgecnn.transforms import SwapOptions, convert, convert_exact, load_model_file, lowrank, save_converted
from edgecnn.transforms.lowrank import SWAP
from edgecnn.zoo import load_model


def _out(model, x):
    with torch.no_grad():
        return model(x)


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def test_full_rank_reproduces_1x1_convs_and_linear_layers():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(8, 24, 3, padding=1),
        nn.Conv2d(24, 40, 1, stride=2),  # a ResNet downsample: the stride moves onto the first factor
        nn.ReLU(),
        nn.Conv2d(40, 16, 1, bias=False),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    ).eval()
    x = torch.randn(2, 8, 12, 12)
    new, report = lowrank(model, SwapOptions(rank_ratio=1.0, min_mac_saving=None), example=x)
    assert [c.name for c in report.changed] == ["1", "3", "6"]
    assert [c.rank for c in report.changed] == [(24,), (16,), (10,)]
    assert max(c.weight_error for c in report.changed) < 1e-6
    assert ("0", "KxK conv (separable / bottleneck swap it)") in report.skipped
    assert _rel(_out(new, x), _out(model, x)) < 1e-5
    first, second = new[1]
    assert (first.stride, second.stride, first.out_channels, second.bias is not None) == (
        (2, 2),
        (1, 1),
        24,
        True,
    )
    assert isinstance(new[6][0], nn.Linear) and new[6][0].bias is None and new[6][1].bias is not None


def test_mac_formula_rank_choice_and_rounding():
    conv = nn.Conv2d(64, 256, 1)
    x = torch.randn(1, 64, 7, 7)
    _, report = lowrank(nn.Sequential(conv).eval(), SwapOptions(rank_ratio=0.3), example=x)
    (change,) = report.changed
    assert change.rank == (19,)  # round(0.3 * min(64, 256))
    assert (change.macs_before, change.macs_after) == (49 * 64 * 256, 49 * 19 * (64 + 256))
    assert change.params_after == 19 * (64 + 256) + 256
    _, report = lowrank(nn.Sequential(conv).eval(), SwapOptions(rank_ratio=0.3, multiple_of=8), example=x)
    assert report.changed[0].rank == (16,)
    # Break-even: r(N + C) >= N*C saves nothing, so the default min_mac_saving skips the layer.
    _, report = lowrank(nn.Sequential(conv).eval(), SwapOptions(rank_ratio=0.9), example=x)
    assert not report.changed and "would save" in report.skipped[0][1]


def test_a_rank_one_weight_is_found_at_any_energy():
    lin = nn.Linear(12, 9, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(9, 1) * torch.randn(1, 12))
    _, report = lowrank(nn.Sequential(lin).eval(), SwapOptions(energy=0.999), example=torch.randn(1, 12))
    assert report.changed[0].rank == (1,) and report.changed[0].weight_error < 1e-6


def test_one_layer_alone_matches_the_whole_model_swap():
    """The planner swaps layers one at a time; that must build what the model-wide swap builds."""
    torch.manual_seed(0)
    conv = nn.Conv2d(32, 48, 1)
    options = SwapOptions(rank_ratio=0.5).validate("lowrank")
    change, value, block = SWAP.layer("0", conv, options, 25, 25)
    whole, report = lowrank(nn.Sequential(conv).eval(), options, example=torch.randn(1, 32, 5, 5))
    assert change == report.changed[0] and value == 16
    x = torch.randn(1, 32, 5, 5)
    assert torch.equal(_out(block, x), _out(whole[0], x))


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2", "efficientnet_b0"])
def test_zoo_models_convert_with_consistent_totals_and_reload(name, tmp_path):
    loaded = load_model(name)
    result = convert(loaded, lowrank=SwapOptions(rank_ratio=0.25, multiple_of=8), input_size=(64, 64))
    swapped = result.reports[-1].changed
    assert swapped and result.macs_after < result.macs_before
    assert result.macs_before - result.macs_after == sum(c.macs_before - c.macs_after for c in swapped)
    path = save_converted(result, tmp_path / "m.safetensors")
    back = load_model_file(path)
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(_out(back.module, x), _out(result.model, x))
    assert [t["name"] for t in back.recipe["transforms"]] == ["fold_bn", "lowrank"]


def test_cli_lowrank(tmp_path):
    out = tmp_path / "r18.safetensors"
    cmd = [sys.executable, "-m", "edgecnn", "convert", "resnet18", "--lowrank", "--rank-ratio", "0.25"]
    r = subprocess.run([*cmd, "--input-size", "64", "-o", str(out), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    lowrank_report = report["reports"][-1]
    assert lowrank_report["transform"] == "lowrank" and {c["name"] for c in lowrank_report["changed"]} >= {
        "fc"
    }
    assert out.is_file()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgecnn",
            "convert",
            "resnet18",
            "--rank-ratio",
            "0.5",
            "-o",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "--rank-ratio with --bottleneck or --lowrank" in r.stderr


def test_refit_lowers_each_swapped_layers_output_error_on_held_out_inputs():
    """The least-squares refit of the last factor: measured independently of its own report, each
    swapped layer's output moves closer to the teacher's on the batch it held out (the fourth), and
    on all the images."""
    import copy

    from edgecnn.transforms.refit import refit

    torch.manual_seed(0)
    loaded = load_model("resnet18", num_classes=10)
    loaded.module.eval()
    layers = {"layer2.0.conv2": [16, 16], "layer3.1.conv1": [32, 32]}
    steps = [{"name": "bottleneck", "layers": layers}, {"name": "lowrank", "layers": {"fc": 16}}]
    student = convert_exact(loaded, steps, input_size=(32, 32)).model.eval()
    before = copy.deepcopy(student)
    x = torch.randn(32, 3, 32, 32)
    batches = [x[i : i + 8].numpy() for i in range(0, 32, 8)]
    reports = refit(student, loaded.module, [*layers, "fc"], batches)
    assert [r.layer for r in reports] == [*layers, "fc"]

    def layer_error(model, name, images=x):
        out = {}
        handles = [
            model.get_submodule(name).register_forward_hook(lambda m, a, o: out.__setitem__("s", o)),
            loaded.module.get_submodule(name).register_forward_hook(lambda m, a, o: out.__setitem__("t", o)),
        ]
        with torch.no_grad():
            model(images)
            loaded.module(images)
        for h in handles:
            h.remove()
        return float((out["s"] - out["t"]).norm() / out["t"].norm())

    held_out = x[24:]
    for r in reports:
        assert r.error_after < r.error_before
        measured = layer_error(student, r.layer, held_out)
        assert measured == pytest.approx(r.error_after, rel=0.05, abs=1e-3)
        assert measured < layer_error(before, r.layer, held_out) - 0.01
        assert layer_error(student, r.layer) < layer_error(before, r.layer) - 0.01


def test_refit_is_judged_on_images_it_was_not_fit_on():
    """ResNet-18's layer4 at 32x32 sees one pixel per image: 24 fitting rows for 64 unknowns per
    output. Judged on its own images the refit looks exact; on the held-out batch it is not, and that
    is the error reported. Of several ridges, the held-out batch picks the best."""
    import copy

    import edgecnn.transforms.refit as R

    torch.manual_seed(0)
    loaded = load_model("resnet18", num_classes=10)
    loaded.module.eval()
    steps = [{"name": "bottleneck", "layers": {"layer4.1.conv1": [64, 64]}}]
    student = convert_exact(loaded, steps, input_size=(32, 32)).model.eval()
    x = torch.randn(32, 3, 32, 32)
    batches = [x[i : i + 8].numpy() for i in range(0, 32, 8)]
    assert R._split(batches) == (batches[:3], batches[3:])

    def run(**kw):
        return R.refit(copy.deepcopy(student), loaded.module, ["layer4.1.conv1"], batches, **kw)[0]

    one, tuned = run(ridges=(1e-4,)), run()
    in_sample = R.refit(
        copy.deepcopy(student), loaded.module, ["layer4.1.conv1"], batches[:1], ridges=(1e-4,)
    )[0]
    assert in_sample.error_after < 0.01  # fit and judged on the same 8 images: "exact"
    assert 0.1 < tuned.error_after <= one.error_after < one.error_before  # held out: better, not exact
