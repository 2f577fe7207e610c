"""Channel pruning of coupled groups: the cut matches Torch-Pruning's own, replays without it, exports."""

from __future__ import annotations

import copy
import sys

import pytest
import torch
import torchvision
from torch import nn

from edgecnn.errors import BadArgumentError
from edgecnn.transforms.prune import keep_count, prune, prune_groups, replay

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _model(ctor):
    torch.manual_seed(0)
    m = ctor(num_classes=5).eval()
    with torch.no_grad():  # trained-looking BN statistics, so a wrong index shows in the output
        for bn in m.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.2, 0.2)
    return m


def test_keep_count_rounds_to_multiples_of_eight_and_never_cuts_everything():
    assert keep_count(64, 0.75) == 48
    assert keep_count(64, 0.7) == 48  # 44.8 -> 48
    assert keep_count(20, 0.5) == 8  # 10 -> 8
    assert keep_count(6, 0.5) == 3  # below one multiple: as computed
    assert keep_count(8, 0.01) == 1
    assert keep_count(64, 1.0) == 64


def test_an_intra_block_cut_equals_zeroing_the_removed_channels_and_keeps_the_strongest():
    m = _model(torchvision.models.resnet18)
    with torch.no_grad():  # channels 0..7 of layer1.0.conv1 made the weakest by far
        m.layer1[0].conv1.weight[:8] *= 1e-3
        m.layer1[0].bn1.weight[:8] *= 1e-3
    x = torch.randn(2, 3, 64, 64)
    new, report = prune(m, {"layer1.0.conv1": 56}, x)
    kept = report.recipe["layers"]["layer1.0.conv1"]["out"]
    assert kept == list(range(8, 64))
    assert report.recipe["layers"]["layer1.0.bn1"]["out"] == kept
    assert report.recipe["layers"]["layer1.0.conv2"]["in"] == kept
    assert new.layer1[0].conv1.out_channels == 56 and new.layer1[0].conv2.in_channels == 56
    zeroed = copy.deepcopy(m)
    with torch.no_grad():
        zeroed.layer1[0].conv2.weight[:, :8] = 0
        assert torch.allclose(new(x), zeroed(x), atol=1e-5)
    assert m.layer1[0].conv1.out_channels == 64  # the input model is untouched


@pytest.mark.parametrize(
    "ctor", [torchvision.models.resnet50, torchvision.models.mobilenet_v2, torchvision.models.densenet121]
)
def test_every_group_cuts_as_torch_pruning_cuts_it(ctor):
    """Residual streams (ResNet-50), depthwise groups (MobileNetV2), concatenations (DenseNet-121):
    edgecnn's index cut of each group matches Torch-Pruning's own pruning of the same channels."""
    import torch_pruning as tp

    m = _model(ctor)
    x = torch.randn(2, 3, 64, 64)
    groups = prune_groups(m, x)
    assert groups and all(not g.why_not for g in groups)
    picks = groups[:: max(1, len(groups) // 6)]  # a spread of groups, shallow to deep
    keep = {g.root: keep_count(g.channels, 0.5) for g in picks}
    ours, report = prune(m, keep, x)
    theirs = copy.deepcopy(m)
    graph = tp.DependencyGraph().build_dependency(theirs, example_inputs=x, verbose=False)
    for root in keep:
        kept = report.recipe["layers"][root]["out"]
        conv = theirs.get_submodule(root)
        cut = [i for i in range(conv.out_channels) if i not in kept]
        graph.get_pruning_group(conv, tp.prune_conv_out_channels, cut).prune()
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-4)
    assert sum(p.numel() for p in ours.parameters()) < sum(p.numel() for p in m.parameters())


def test_a_pruned_model_file_reloads_without_torch_pruning(tmp_path, monkeypatch):
    from edgecnn.transforms import load_model_file, save_with_recipe
    from edgecnn.transforms.model_file import model_recipe
    from edgecnn.zoo import load_model

    loaded = load_model("resnet18", num_classes=5)
    x = torch.randn(2, 3, 32, 32)
    groups = [g for g in prune_groups(loaded.module, x) if not g.why_not]
    keep = {g.root: keep_count(g.channels, 0.75) for g in groups}
    new, report = prune(loaded.module.eval(), keep, x)
    recipe = model_recipe(loaded, (32, 32), [{"name": "prune", **report.recipe}])
    path = save_with_recipe(new, recipe, tmp_path / "pruned.safetensors")
    monkeypatch.setitem(sys.modules, "torch_pruning", None)  # import torch_pruning now fails
    again = load_model_file(path)
    with torch.no_grad():
        assert torch.equal(again.module.eval()(x), new(x))
    assert again.recipe["transforms"][-1]["name"] == "prune"


def test_a_tampered_prune_recipe_is_a_one_line_error(tmp_path):
    from edgecnn.errors import WeightsError
    from edgecnn.transforms import load_model_file, save_with_recipe
    from edgecnn.transforms.model_file import model_recipe
    from edgecnn.zoo import load_model

    loaded = load_model("resnet18", num_classes=5)
    for bad in ({"out": [3, 1]}, {"side": [0]}, [1, 2], {"out": []}):
        step = {"name": "prune", "layers": {"layer1.0.conv1": bad}}
        path = save_with_recipe(
            loaded.module, model_recipe(loaded, (32, 32), [step]), tmp_path / "bad.safetensors", force=True
        )
        with pytest.raises(WeightsError, match=r"layer1\.0\.conv1"):
            load_model_file(path)


def test_a_pruned_depthwise_model_exports_to_onnx_that_matches_pytorch(tmp_path):
    import numpy as np
    import onnxruntime as ort

    from edgecnn.export.onnx import export_onnx

    m = _model(torchvision.models.mobilenet_v2)
    x = torch.randn(1, 3, 64, 64)
    groups = prune_groups(m, x)
    new, _ = prune(m, {g.root: keep_count(g.channels, 0.5) for g in groups}, x)
    export_onnx(new, tmp_path / "m.onnx", input_shape=(1, 3, 64, 64))
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, new(x).numpy(), atol=1e-4, rtol=1e-4)


def test_groups_edgecnn_cannot_cut_are_named_with_the_reason_and_refused():
    class Odd(nn.Module):  # a GroupNorm after the first conv: not a layer edgecnn cuts by index
        def __init__(self):
            super().__init__()
            self.conv1, self.norm = nn.Conv2d(3, 16, 3), nn.GroupNorm(4, 16)
            self.conv2, self.conv3 = nn.Conv2d(16, 16, 3), nn.Conv2d(16, 4, 1)

        def forward(self, x):
            return self.conv3(torch.relu(self.conv2(self.norm(self.conv1(x)))))

    m, x = Odd().eval(), torch.randn(1, 3, 16, 16)
    groups = {g.root: g for g in prune_groups(m, x)}
    assert "GroupNorm" in groups["conv1"].why_not
    assert groups["conv2"].why_not == ""
    assert "conv3" not in groups  # the output layer roots no group: its channels are the output
    with pytest.raises(BadArgumentError, match="GroupNorm"):
        prune(m, {"conv1": 8}, x)
    with pytest.raises(BadArgumentError, match="roots no group"):
        prune(m, {"conv3": 2}, x)
    with pytest.raises(BadArgumentError, match=r"keeps 1\.\.16"):
        prune(m, {"conv2": 0}, x)
    new, _ = prune(m, {"conv2": 8}, x)
    assert new(x).shape == (1, 4, 12, 12)


def test_replay_rejects_a_layer_it_cannot_cut():
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.GroupNorm(2, 8))
    with pytest.raises(TypeError, match="GroupNorm"):
        replay(m, {"layers": {"1": {"out": [0, 1]}}})


def test_convert_prune_cuts_every_group_uniformly_and_the_file_reloads(tmp_path):
    from tests._cli import run_cli

    out = tmp_path / "r18p.safetensors"
    r = run_cli("convert", "resnet18", "--prune", "0.25", "--input-size", "32", "-o", out, "--json")
    assert r.returncode == 0, r.stderr
    import json

    result = json.loads(r.stdout)
    prune_report = next(rep for rep in result["reports"] if rep["transform"] == "prune")
    assert len(prune_report["groups"]) == 12  # every group of ResNet-18, residual streams included
    assert all(kept == channels * 3 // 4 for channels, kept in prune_report["groups"].values())
    assert 1.6 < result["params_before"] / result["params_after"] < 1.9  # ~(3/4)^2 of the conv weights
    from edgecnn.transforms import load_model_file

    loaded = load_model_file(out)
    assert [s["name"] for s in loaded.recipe["transforms"]] == ["fold_bn", "prune"]
    assert loaded.module(torch.randn(1, 3, 32, 32)).shape == (1, 1000)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--prune", "1.5"), "fraction of channels removed"),
        (("--prune", "0"), "fraction of channels removed"),
    ],
)
def test_convert_prune_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    from tests._cli import run_cli

    r = run_cli("convert", "resnet18", *args, "-o", tmp_path / "x.safetensors")
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.safetensors").exists()
