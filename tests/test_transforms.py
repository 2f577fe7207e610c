"""Converter: BN folding, separable and bottleneck swaps from the weights, reports, save/reload."""

import json
import re
import subprocess
import sys

import pytest
import torch
from _cli import run_cli
from _zoo import representatives
from torch import nn

from edgecnn.errors import BadArgumentError, WeightsError
from edgecnn.transforms import (
    SwapOptions,
    bottleneck,
    convert,
    fold_bn,
    load_model_file,
    save_converted,
    separable,
)
from edgecnn.transforms.base import rank_for_energy
from edgecnn.transforms.fold_bn import _producers
from edgecnn.zoo import create_model, get_spec, list_models, load_model

BN_MODELS = [
    n
    for n in list_models()
    if any(isinstance(m, nn.BatchNorm2d) for m in create_model(n, device="meta").modules())
]


def _small(name):
    spec = get_spec(name)
    return spec.input_size if spec.fixed_input else (max(spec.min_input_size, 64),) * 2


def _x(name, batch=2):
    spec = get_spec(name)
    return torch.randn(batch, spec.in_chans, *_small(name))


def _out(model, x):
    with torch.no_grad():
        y = model(x)
    return y["out"] if isinstance(y, dict) else y


def _randomise_bn(model):
    # Fresh BNs are identities; give them real statistics so folding has something to get wrong.
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
    return model


def _rel(a, b):
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max())


def test_models_with_batchnorm_are_found():
    assert {"resnet50", "vgg16_bn", "densenet121", "xception", "se_resnet50", "fcn_resnet50"} <= set(
        BN_MODELS
    )
    assert "vgg16" not in BN_MODELS and "convnext_tiny" not in BN_MODELS


@pytest.mark.parametrize("name", representatives(BN_MODELS))
def test_fold_bn_matches_eval_model(name):
    model = _randomise_bn(create_model(name))
    x = _x(name)
    folded, report = fold_bn(model, example=x)
    assert report.recipe["pairs"], "nothing folded"
    assert _rel(_out(folded, x), _out(model, x)) < 1e-4
    # No BatchNorm left directly after a conv: a second pass finds nothing to fold.
    assert not [p for p in _producers(folded, x).values() if not isinstance(p, str)]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == len(report.skipped)
    # The input model is untouched.
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == len(report.recipe["pairs"]) + len(
        report.skipped
    )


def test_fold_bn_reports_why_a_bn_stays():
    _, report = fold_bn(create_model("densenet121"), example=_x("densenet121"))
    assert report.skipped and all("not the output of a conv" in why for _, why in report.skipped)


def test_fold_bn_linear_and_conv_without_bias():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 5), nn.BatchNorm1d(5)
    )
    model[1].running_var.fill_(3.0)
    model[4].running_mean.fill_(0.5)
    model.eval()
    x = torch.randn(2, 3, 6, 6)
    folded, report = fold_bn(model, example=x)
    assert report.recipe["pairs"] == [["0", "1"], ["3", "4"]]
    assert folded[0].bias is not None and isinstance(folded[1], nn.Identity)
    assert _rel(folded(x), model(x)) < 1e-5


def test_fold_bn_refuses_training_mode():
    with pytest.raises(BadArgumentError, match="eval-mode"):
        fold_bn(create_model("resnet18").train(), example=_x("resnet18"))


@pytest.mark.parametrize("name", ["resnet18", "vgg11_bn"])
@pytest.mark.parametrize(
    ("swap", "options"),
    [
        (separable, SwapOptions(rank=10**6, min_mac_saving=None)),  # T = K*K (or N) for every layer
        (bottleneck, SwapOptions(rank_ratio=1.0, min_mac_saving=None)),
    ],
)
def test_full_rank_swaps_reproduce_the_conv(name, swap, options):
    model = _randomise_bn(create_model(name))
    x = _x(name)
    new, report = swap(model, options, example=x)
    assert len(report.changed) == sum(
        isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1) for m in model.modules()
    )
    assert max(c.weight_error for c in report.changed) < 1e-6
    assert _rel(_out(new, x), _out(model, x)) < 1e-4


def test_separable_structure_and_mac_formula():
    conv = nn.Conv2d(16, 32, 3, stride=2, padding=1, dilation=1)
    model = nn.Sequential(conv).eval()
    new, report = separable(model, SwapOptions(rank=2), example=torch.randn(1, 16, 8, 8))
    dw, pw = new[0]
    assert (dw.in_channels, dw.out_channels, dw.groups, dw.stride, dw.padding) == (16, 32, 16, (2, 2), (1, 1))
    assert (pw.in_channels, pw.out_channels, pw.kernel_size) == (32, 32, (1, 1)) and pw.bias is not None
    change = report.changed[0]
    # K*K*N / (T*(K*K+N)) = 9*32 / (2*41)
    assert change.macs_before / change.macs_after == pytest.approx(9 * 32 / (2 * 41))
    assert change.macs_after == 16 * (16 * 2 * 9 + 32 * 16 * 2)


def test_energy_picks_the_smallest_rank():
    assert rank_for_energy([4.0, 3.0, 2.0, 1.0], 0.7) == 2
    assert rank_for_energy([4.0, 3.0, 2.0, 1.0], 0.71) == 3
    assert rank_for_energy([4.0, 3.0, 2.0, 1.0], 1.0) == 4
    # A rank-1 kernel is found exactly at any energy.
    conv = nn.Conv2d(4, 8, 3, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(8, 1, 1, 1) * torch.randn(1, 4, 1, 1) * torch.randn(1, 1, 3, 3))
    _, report = bottleneck(
        nn.Sequential(conv).eval(), SwapOptions(energy=0.99), example=torch.randn(1, 4, 6, 6)
    )
    assert report.changed[0].rank == (1, 1) and report.changed[0].weight_error < 1e-6


def test_selection_globs_limits_and_skips():
    model = create_model("resnet18")
    x = _x("resnet18")
    _, report = separable(model, SwapOptions(rank=1, include=("layer4.*",)), example=x)
    assert {c.name for c in report.changed} == {
        "layer4.0.conv1",
        "layer4.0.conv2",
        "layer4.1.conv1",
        "layer4.1.conv2",
    }
    _, report = separable(model, SwapOptions(rank=1, exclude=("layer4.*", "conv1")), example=x)
    assert all(not c.name.startswith("layer4") and c.name != "conv1" for c in report.changed)
    assert ("layer1.0.conv1", "not selected by --include/--exclude") not in report.skipped
    _, report = separable(model, SwapOptions(rank=1, max_error=0.1), example=x)
    assert not report.changed and any("--max-error" in why for _, why in report.skipped)
    _, report = separable(model, SwapOptions(rank=9), example=x)  # T = K*K never saves MACs
    assert not [c for c in report.changed if c.kernel == (3, 3)]
    assert any("1x1 conv" in why for _, why in report.skipped)


def _quick(name):
    """`name` with random weights in a fraction of the init's time: VGG's 120M-weight classifier
    alone takes seconds of Kaiming init, and no swap here touches a Linear. Convs get Gaussian
    weights (what the SVDs see), other tensors a cheap fixed pattern, BN neutral statistics."""
    loaded = load_model(name, device="meta")
    model = loaded.module.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, t in model.state_dict().items():
            if not t.is_floating_point():
                t.zero_()
            elif key.endswith("running_var"):
                t.fill_(1.0)
            elif t.ndim == 4:
                t.copy_(torch.randn(t.shape, generator=gen) * (2 / t[0].numel()) ** 0.5)
            else:
                t.copy_(torch.sin(torch.arange(t.numel(), dtype=torch.float32)).view(t.shape) * 0.01)
    loaded.module = model.eval()
    return loaded


@pytest.mark.parametrize("name", representatives(list_models()))
def test_every_zoo_model_survives_both_swaps(name):
    loaded = _quick(name)
    x = _x(name, batch=1)
    ref = _out(loaded.module, x)
    for kw in (
        {"separable": SwapOptions(rank=2, min_mac_saving=None)},
        {"bottleneck": SwapOptions(rank_ratio=0.5, min_mac_saving=None)},
    ):
        result = convert(loaded, input_size=_small(name), **kw)
        assert _out(result.model, x).shape == ref.shape
        swapped = result.reports[-1].changed
        assert swapped
        # Totals from the analysis pass agree with the per-layer MAC arithmetic.
        assert result.macs_before - result.macs_after == sum(c.macs_before - c.macs_after for c in swapped)


def test_convert_resnet50_energy_report_and_reload(tmp_path):
    loaded = load_model("resnet50")
    result = convert(loaded, separable=SwapOptions(energy=0.9), input_size=(64, 64))
    assert result.params_after < result.params_before and result.macs_after < result.macs_before
    assert 0 < result.output_error < 1
    path = save_converted(result, tmp_path / "r50.safetensors")
    back = load_model_file(path)
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(_out(back.module, x), _out(result.model, x))
    assert back.recipe["transforms"][0]["name"] == "fold_bn" and back.weights.source == "converted"


def test_convert_errors():
    loaded = load_model("resnet18")
    with pytest.raises(BadArgumentError, match="separable swapped no layer of resnet18"):
        convert(loaded, separable=SwapOptions(rank=1, include=("nothing*",)))
    with pytest.raises(BadArgumentError, match="nothing to convert"):
        convert(loaded, fold_bn=False)
    for bad, msg in (
        (SwapOptions(energy=1.5), "--energy"),
        (SwapOptions(rank=0), "--rank"),
        (SwapOptions(rank=2, energy=0.5), "not both"),
        (SwapOptions(rank_ratio=0.5), "takes --rank"),
    ):
        with pytest.raises(BadArgumentError, match=msg):
            bad.validate("separable")


def test_save_is_atomic_and_never_overwrites(tmp_path, monkeypatch):
    result = convert(load_model("lenet5"), separable=SwapOptions(rank=1))
    path = tmp_path / "lenet.safetensors"
    save_converted(result, path)
    first = path.read_bytes()
    with pytest.raises(Exception, match="already exists"):
        save_converted(result, path)
    import safetensors.torch

    def boom(state, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError):
        save_converted(result, path, force=True)
    assert path.read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet.safetensors"]


def test_loading_a_plain_safetensors_file_as_converted_fails(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"a": torch.zeros(1)}, str(path))
    with pytest.raises(WeightsError, match="not an edgecnn model file"):
        load_model_file(path)


def test_cli_convert_json_and_errors(tmp_path):
    out = tmp_path / "r18.safetensors"
    cmd = [
        sys.executable,
        "-m",
        "edgecnn",
        "convert",
        "resnet18",
        "--separable",
        "--rank",
        "2",
        "--input-size",
        "64",
        "-o",
        str(out),
        "--json",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["macs_before"] / d["macs_after"] == pytest.approx(d["mac_reduction"]) and d["mac_reduction"] > 3
    assert out.is_file()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "already exists" in again.stderr
    for args, needle in (
        (["--energy", "1.5"], "--energy must be in (0, 1]"),
        (["--rank", "0"], "positive integer"),
    ):
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "edgecnn",
                "convert",
                "resnet18",
                "--separable",
                *args,
                "-o",
                str(tmp_path / "x.safetensors"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_convert_names_each_skipped_layer_and_warns_when_it_buys_little(tmp_path):
    """Every skipped layer with its reason on screen (not only in --json), and a warning when the
    setting saves little for a large output error (random ResNet-18, energy 0.9: 1.13x, 62%)."""
    out = tmp_path / "c.safetensors"
    args = ("convert", "resnet18", "--bottleneck", "--input-size", "32", "-o", str(out))
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert "skipped layer2.0.downsample.0: 1x1 conv" in r.stdout
    assert "skipped layer2.0.conv1: rank (" in r.stdout and "% of MACs (need > 0%)" in r.stdout
    assert re.search(r"warning: 1\.[01]\dx fewer MACs for an output error of [1-9]\d%", r.stdout), r.stdout
    r = run_cli(*args[:-2], "--rank-ratio", "0.25", "-o", str(tmp_path / "d.safetensors"))
    assert r.returncode == 0 and "warning" not in r.stdout  # 4x fewer MACs: worth its error
