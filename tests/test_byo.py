"""Any model in: your own builder by reference (and the trust its model files need), timm models by
name, and the layers timm adds, each transformed by what it computes or left with the reason."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from _cli import run_cli

ROOT = Path(__file__).parents[1]
MARKED = """
from pathlib import Path
Path(__file__).with_name("imported.marker").write_text("imported")
from torch import nn

def build(num_classes=3):
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes),
    )

def not_a_module(num_classes=3):
    return "a string"

def fixed():
    return build(num_classes=4)
"""


def _forget(stem: str) -> None:
    """Drop an imported builder module, so the next import would run the file (and its marker) again."""
    for name in [n for n in sys.modules if n.startswith(f"edgecnn_user_{stem}_")]:
        del sys.modules[name]


@pytest.fixture
def marked_file(tmp_path):
    """A model file made from a builder whose import writes a marker; the marker removed after."""
    from edgecnn.transforms import save_with_recipe
    from edgecnn.transforms.model_file import model_recipe
    from edgecnn.zoo import load_model

    (tmp_path / "marked.py").write_text(MARKED)
    model = load_model(f"{tmp_path / 'marked.py'}:build", num_classes=3)
    path = save_with_recipe(model.module, model_recipe(model, (16, 16)), tmp_path / "marked.safetensors")
    (tmp_path / "imported.marker").unlink()
    _forget("marked")
    yield path
    _forget("marked")


def test_a_model_file_from_your_code_imports_it_only_when_trusted(marked_file, tmp_path):
    marker = tmp_path / "imported.marker"
    r = run_cli("inspect", marked_file)
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert "built by Python code" in line and "--trust-code" in line and "marked.py:build" in line
    assert not marker.exists()  # refused before anything of the file was imported

    r = run_cli("inspect", marked_file, "--trust-code")
    assert r.returncode == 0, r.stderr
    assert "16x16x3" in r.stdout and marker.exists()

    _forget("marked")
    marker.unlink()
    assert run_cli("inspect", marked_file).returncode == 2  # --trust-code held for its command only
    assert not marker.exists()
    r = run_cli("inspect", f"{tmp_path / 'marked.py'}:build", "--weights", marked_file)
    assert r.returncode == 0, r.stderr  # the builder named again: trusted
    assert "16x16x3" in r.stdout  # the file's own input size, not the builder's default


def test_a_model_file_from_your_code_reloads_exactly_in_python_when_trusted(marked_file, tmp_path):
    from edgecnn.errors import WeightsError
    from edgecnn.transforms import load_model_file
    from edgecnn.transforms.model_file import read_recipe
    from edgecnn.zoo import trusting

    with pytest.raises(WeightsError, match="--trust-code"):
        load_model_file(marked_file)
    assert not (tmp_path / "imported.marker").exists()
    with trusting():
        a = load_model_file(marked_file)
    with trusting(f"{tmp_path / 'marked.py'}:build"):  # that builder alone
        b = load_model_file(marked_file)
    recipe = read_recipe(marked_file)
    assert recipe["base"] == "builder" and recipe["builder"] == f"{(tmp_path / 'marked.py').resolve()}:build"
    assert a.card.name == "marked" and a.card.input_size == (16, 16) and a.num_classes == 3
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(a.module(x), b.module(x))


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("missing.py:build", "builder file not found"),
        ("marked.py:nothere", "has no function 'nothere'"),
        ("marked.py:not_a_module", "returned str, not a torch.nn.Module"),
        ("broken.py:build", "broken.py failed: SyntaxError"),
        ("no_such_package.nets:build", "cannot import no_such_package.nets"),
        ("marked.py:fixed", "builds a 4-class model, not 3: its function must take num_classes="),
    ],
)
def test_a_bad_builder_is_one_line_and_exit_2_and_writes_nothing(tmp_path, ref, message):
    (tmp_path / "marked.py").write_text(MARKED)
    (tmp_path / "broken.py").write_text("def build(:\n")
    out = tmp_path / "out.safetensors"
    r = run_cli("convert", ref, "--fold-bn", "--num-classes", "3", "-o", out, cwd=tmp_path)
    _forget("marked")
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert message in line
    assert not out.exists()


def test_a_timm_model_by_name_has_timms_card_and_a_misspelt_one_is_one_line():
    pytest.importorskip("timm")
    from edgecnn.zoo import card_for, list_timm

    card = card_for("timm:resnet18d")
    assert (card.name, card.input_size, card.resize_size, card.num_classes) == (
        "resnet18d",
        (224, 224),
        256,
        1000,
    )
    assert card.mean == pytest.approx((0.485, 0.456, 0.406))
    assert card_for("timm:resnet18d", input_size=(64, 64), num_classes=5).resize_size == 73
    assert "timm:convnext_atto" in list_timm("convnext_at*")
    r = run_cli("inspect", "timm:resnet18x")
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert "unknown timm model 'resnet18x'; did you mean" in line and "resnet18d" in line
    r = run_cli("zoo", "--timm", "convnext_at*")
    assert r.returncode == 0 and "timm:convnext_atto" in r.stdout.splitlines()


def _random_bn(module) -> None:
    """Statistics far from the defaults, so a fold that lost anything shows."""
    g = torch.Generator().manual_seed(0)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)


def _relative_error(a, b) -> float:
    return ((a - b).norm() / a.norm()).item()


def test_timms_layers_fold_by_what_they_compute_and_the_rest_are_named():
    """BatchNormAct2d folds and keeps its activation; Conv2dSame takes a fold (it pads, then convolves
    with its weight as it is) but no swap; StdConv2d standardises its weight, so its BN stays."""
    pytest.importorskip("timm")
    from timm.layers import BatchNormAct2d, Conv2dSame, StdConv2d
    from torch import nn

    from edgecnn.card import Model, card_from
    from edgecnn.transforms import SwapOptions, convert

    net = nn.Sequential(
        Conv2dSame(3, 16, 3, stride=2),
        BatchNormAct2d(16, act_layer=nn.SiLU),
        nn.Conv2d(16, 16, 3, padding=1),
        BatchNormAct2d(16, act_layer=nn.ReLU),
        StdConv2d(16, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    ).eval()
    _random_bn(net)
    model = Model(net, card_from(net, input_size=(17, 17), name="timmlayers"))
    folded = convert(model, fold_bn=True)
    x = torch.randn(2, 3, 17, 17)
    with torch.no_grad():
        assert _relative_error(net(x), folded.model(x)) < 1e-5
    step = folded.recipe["transforms"][0]
    assert step["pairs"] == [["0", "1"], ["2", "3"]]
    skipped = dict(folded.reports[0].skipped)
    assert "StdConv2d" in skipped["5"] and "may change its weight" in skipped["5"]
    assert isinstance(folded.model[1], nn.Sequential) and isinstance(folded.model[1][1], nn.SiLU)

    swapped = convert(model, fold_bn=False, separable=SwapOptions(rank=1))
    reasons = dict(swapped.reports[0].skipped)
    assert "Conv2dSame" in reasons["0"] and "StdConv2d" in reasons["4"]
    assert [c.name for c in swapped.reports[0].changed] == ["2"]  # the plain conv alone


@pytest.mark.parametrize(
    "name", ["resnet18d", "mobilenetv3_large_100", "efficientnet_b0", "regnety_008", "convnext_atto"]
)
def test_timm_models_fold_exactly_and_their_files_reload_without_trust(tmp_path, name):
    pytest.importorskip("timm")
    from edgecnn.transforms import convert, load_model_file, save_converted
    from edgecnn.zoo import load_model

    model = load_model(f"timm:{name}", num_classes=10)
    _random_bn(model.module)
    folded = convert(model, fold_bn=True, input_size=(64, 64))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = model.module(x)
        assert _relative_error(reference, folded.model(x)) < 1e-4
        path = save_converted(folded, tmp_path / f"{name}.safetensors")
        again = load_model_file(path)  # timm's code is a library's, not the file's: no trust needed
        assert again.card.name == name and again.card.input_size == (64, 64)
        assert _relative_error(reference, again.module(x)) < 1e-4


def _export_onnx(module, path, example, names=("image",), dynamic=True):
    """torch.onnx's own export (no edgecnn manifest): what a deployment engineer hands over."""
    axes = {n: {0: "batch"} for n in names} if dynamic else None
    torch.onnx.export(module, example, str(path), input_names=list(names), dynamic_axes=axes, dynamo=False)
    return path


def test_an_onnx_file_edgecnn_did_not_write_inspects_and_benches(tmp_path):

    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import mynet
    finally:
        sys.path.pop(0)
    from edgecnn.analysis import analyze
    from edgecnn.runtime import available

    net = mynet.build(num_classes=10, width=8).eval()
    path = _export_onnx(net, tmp_path / "net.onnx", torch.randn(1, 3, 32, 32))
    r = run_cli("inspect", path, "--json")
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    assert stats["macs"] == analyze(net, (32, 32), in_chans=3, name="net").macs  # conv + dense, per image
    assert stats["input_shape"] == [1, 3, 32, 32] and [x["type"] for x in stats["layers"]][:2] == [
        "Conv",
        "Relu",
    ]

    # bench: the graph as it is, in every runtime that reads it, at both sizes of its dynamic batch
    runtimes = {"onnxruntime", "openvino"} if available("openvino") else {"onnxruntime"}
    fast = ("--duration", "0.05", "--warmup", "0.05", "--iterations", "3", "--no-memory")
    r = run_cli("bench", path, *fast, "--batch", "1,2", "--json", "-o", tmp_path / "run.json")
    assert r.returncode == 0, r.stderr
    rows = json.loads((tmp_path / "run.json").read_text())["rows"]
    assert len(rows) == 2 * len(runtimes) and not any(row["error"] for row in rows), rows
    assert all(row["latency"]["median_ms"] > 0 for row in rows)
    assert {row["runtime"] for row in rows} == runtimes


@pytest.mark.skipif(not __import__("edgecnn.runtime").runtime.available("openvino"), reason="needs OpenVINO")
def test_an_onnx_file_edgecnn_did_not_write_exports_checked_against_itself_and_scores(tmp_path):
    """fp32 and INT8 OpenVINO IR and ONNX from a torch.onnx file, each checked against ONNX Runtime
    fp32 of that file; bench scores the file and its artifacts on the same test digits."""

    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import mynet
    finally:
        sys.path.pop(0)
    torch.manual_seed(0)
    net = mynet.build(num_classes=10, width=8).eval()
    path = _export_onnx(net, tmp_path / "net.onnx", torch.randn(1, 3, 32, 32))
    norm = ("--mean", "0.1307", "--std", "0.3081")
    made = {}
    for precision in ("fp32", "int8"):
        extra = ("--calib", "digits", *norm) if precision == "int8" else ()
        out = tmp_path / "export"
        r = run_cli(
            "export", path, "-t", "openvino,onnx", "--precision", precision, *extra, "-o", out, "--json"
        )
        assert r.returncode == 0, r.stderr
        result = json.loads(r.stdout)
        assert result["reference"] == "ONNX Runtime fp32 of net.onnx" and result["input_shape"] == [
            1,
            3,
            32,
            32,
        ]
        for target in result["targets"]:
            assert target["status"] == "ok", target
            gated = [p for p in target["parity"] if p["max_rel_allowed"] is not None]
            assert gated and all(p["passed"] for p in target["parity"])
            manifest = json.loads(Path(target["manifest"]).read_text())
            assert manifest["input"]["name"] == "image" and manifest["weights"]["source"] == "file"
            assert (manifest["input"]["mean"] is None) == (precision == "fp32")  # recorded when given
            made[(target["target"], precision)] = target["path"]
        if precision == "int8":  # calibrated, and checked on real digits
            assert all(any(p["inputs"] == "images:64" for p in t["parity"]) for t in result["targets"])
    bare = tmp_path / "bare.int8.onnx"  # the int8 ONNX without its manifest: read as int8 from its graph
    shutil.copy(made[("onnx", "int8")], bare)
    items = [path, made[("openvino", "fp32")], made[("openvino", "int8")], bare]
    fast = ("--duration", "0.05", "--warmup", "0.05", "--iterations", "3", "--no-memory")
    score = ("--data", "digits", "--data-limit", "200", *norm)
    r = run_cli(
        "bench", *items, *fast, *score, "-r", "onnxruntime,openvino", "--json", "-o", tmp_path / "b.json"
    )
    assert r.returncode == 0, r.stderr
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert not any(row["error"] for row in rows) and len(rows) == 6, rows
    precision = {(Path(row["artifact"]).name, row["runtime"]): row["precision"] for row in rows}
    assert (
        precision[("net.onnx", "openvino")] == "fp32" and precision[("bare.int8.onnx", "openvino")] == "int8"
    )
    top1 = {(Path(row["artifact"]).name, row["runtime"]): row["accuracy"]["top1"] for row in rows}
    assert abs(top1[("net.onnx", "onnxruntime")] - top1[("net.xml", "openvino")]) <= 1.0, top1
    r = run_cli("bench", path, *fast, "--data", "digits")  # the graph records no preprocessing
    assert r.returncode == 1 and "give --mean and --std" in r.stdout + r.stderr
    r = run_cli("bench", path, *fast, "--data", "digits", "--mean", "0.5,0.5", "--std", "0.2")
    assert r.returncode == 1 and "need 1 or 3 values each for this 3-channel input" in r.stdout + r.stderr


class _TwoInputs(torch.nn.Module):
    def forward(self, a, b):
        return a + b


class _Flat(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(x)


@pytest.mark.parametrize(
    ("command", "build", "message"),
    [
        ("inspect", "two", "has 2 inputs (a, b); edgecnn takes classifiers with one image input"),
        ("inspect", "flat", "its input 'image' is ?x8, not an image batch N x C x H x W"),
        ("convert", "image", "graph.onnx: an ONNX graph: inspect, export and bench take it as it is"),
        ("compress", "image", "graph.onnx: an ONNX graph: inspect, export and bench take it as it is"),
        ("train", "image", "graph.onnx: an ONNX graph: inspect, export and bench take it as it is"),
        ("export", "two", "has 2 inputs (a, b); edgecnn takes classifiers with one image input"),
        ("export", "flat", "its input 'image' is ?x8, not an image batch N x C x H x W"),
        ("export-int8", "image", "records no preprocessing, and --calib / --data read images: give --mean"),
        ("export-fold", "image", "--fold-bn or a swap is for a PyTorch model; graph.onnx is an ONNX graph"),
        ("export-norm", "image", "--mean and --std need 1 or 3 values each for this 3-channel input"),
    ],
)
def test_an_onnx_file_edgecnn_cannot_take_is_one_line_and_exit_2(tmp_path, command, build, message):
    path = tmp_path / "graph.onnx"
    if build == "two":
        _export_onnx(_TwoInputs(), path, (torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8)), names=("a", "b"))
    elif build == "flat":
        _export_onnx(_Flat(), path, torch.randn(1, 8))
    else:
        _export_onnx(torch.nn.Conv2d(3, 4, 3), path, torch.randn(1, 3, 8, 8))
    extra = {
        "convert": ("--fold-bn", "-o", tmp_path / "out.safetensors"),
        "export": ("-t", "onnx,openvino", "-o", tmp_path / "out"),
        "export-int8": ("--precision", "int8", "--calib", "digits", "-o", tmp_path / "out"),
        "export-fold": ("--fold-bn", "-o", tmp_path / "out"),
        "export-norm": ("--mean", "0.5,0.5", "--std", "0.2", "-o", tmp_path / "out"),
    }.get(command, ())
    r = run_cli(command.split("-")[0], path, *extra)
    assert r.returncode == 2
    (line,) = [x for x in r.stderr.strip().splitlines() if x.startswith("error")]
    assert message in line
    assert not (tmp_path / "out.safetensors").exists() and not (tmp_path / "out").exists()


SMALLNET = """
from torch import nn


class Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        y = self.bn1(self.conv1(x)).relu()
        return (x + self.bn2(self.conv2(y))).relu()


def stage(c_in, c_out, stride):
    conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.ReLU(), Residual(c_out))


def build(num_classes=10):
    return nn.Sequential(
        stage(3, 32, 1), stage(32, 64, 2), stage(64, 128, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes),
    )
"""


def test_your_network_in_a_py_file_trains_compresses_exports_and_benches(tmp_path):
    """The job end to end on a network in no registry, named only by its file in the first command:
    the model files carry it from there (with --trust-code)."""

    (tmp_path / "smallnet.py").write_text(SMALLNET)
    model = tmp_path / "smallnet.safetensors"
    r = run_cli("train", "smallnet.py:build", "--data", "digits", "--input-size", "32", "--epochs", "1",
                "-o", model, "--json", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    trained = json.loads(r.stdout)
    assert trained["test_top1"] > 80

    r = run_cli("compress", model, "-r", "onnxruntime", "--speedup", "1.5", "--distill-epochs", "1", "-o",
                tmp_path / "small", "--json")  # fmt: skip
    assert r.returncode == 2 and "--trust-code" in r.stderr  # the file names code: not run untrusted
    # --no-rivals: the knapsack's plan alone (rivals: tests/test_plan.py, tests/test_prune_plan.py)
    r = run_cli("compress", model, "--trust-code", "-r", "onnxruntime", "--speedup", "1.5", "--no-rivals",
                "--distill-epochs", "1", "-o", tmp_path / "small", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["structure"] is None and result["plan"]["uniform"] is None
    assert result["measured_speedup"] >= 1.4, result["measured_speedup"]  # compress's own table
    assert result["top1"][1] > result["top1"][0] - 5

    for precision in ("fp32", "int8"):
        r = run_cli("export", model, "--trust-code", "-t", "onnx,openvino", "--precision", precision,
                    "--calib", "digits", "-o", tmp_path / precision, "--json")  # fmt: skip
        assert r.returncode == 0, r.stderr
        targets = json.loads(r.stdout)["targets"]
        assert [t["status"] for t in targets] == ["ok", "ok"]  # each verified against PyTorch

    student = result["student_path"]
    r = run_cli("bench", model, student, "--trust-code", "-r", "torch,onnxruntime", "--duration", "0.1",
                "-o", tmp_path / "bench.json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert not any(row["error"] for row in rows)
    scored = {f"{row['accuracy']['images']} images from {row['accuracy']['dataset']}" for row in rows}
    assert scored == {trained["test_set"]}  # train's own test images, for the original and the student
    assert all(row["memory"] for row in rows if row["runtime"] == "torch")  # its own process trusted it too


def test_a_bn_with_its_activation_inside_is_pruned_and_the_file_replays_the_cut(tmp_path):
    """timm's BatchNormAct2d is cut as its channels are (a copy, its activation kept), so MobileNetV3-
    and EfficientNet-style blocks plan pruning and their students reload."""
    pytest.importorskip("timm")
    from timm.layers import BatchNormAct2d
    from torch import nn

    from edgecnn.card import Model, card_from
    from edgecnn.transforms import convert, load_model_file, save_converted

    net = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1, bias=False), BatchNormAct2d(32, act_layer=nn.SiLU),
        nn.Conv2d(32, 16, 1, bias=False), nn.BatchNorm2d(16),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4),
    ).eval()  # fmt: skip
    _random_bn(net)
    model = Model(net, card_from(net, input_size=(16, 16), name="bnact"))
    pruned = convert(model, fold_bn=False, prune=0.5)
    cut = pruned.model[1]
    assert type(cut) is BatchNormAct2d and cut.num_features == 16 and isinstance(cut.act, nn.SiLU)
    path = save_converted(pruned, tmp_path / "bnact.safetensors")
    again = load_model_file(path, base=net)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(pruned.model(x), again.module(x))


def test_train_passes_builder_arguments_and_the_file_records_them(tmp_path):
    from edgecnn.transforms.model_file import read_recipe

    builder = f"{ROOT / 'examples' / 'mynet.py'}:build"
    out = tmp_path / "m.safetensors"
    r = run_cli("train", builder, "-a", "width=4", "--epochs", "1", "--input-size", "32", "-o", out)
    assert r.returncode == 0, r.stderr
    assert read_recipe(out)["model_kwargs"] == {"width": 4}
    r = run_cli("inspect", out, "--trust-code", "--json")
    assert r.returncode == 0, r.stderr
    convs = [layer for layer in json.loads(r.stdout)["layers"] if layer["type"] == "Conv2d"]
    assert convs[0]["output_shape"][1] == 4  # the stem at width 4, as the builder argument asked


@pytest.mark.parametrize("command", ["train", "compress", "convert", "export"])
def test_a_checkpoint_named_as_the_model_says_to_use_weights(tmp_path, command):
    ckpt = tmp_path / "mine.pth"
    torch.save({"w": torch.zeros(1)}, ckpt)
    r = run_cli(command, ckpt, cwd=tmp_path)
    assert r.returncode == 2
    (line,) = [x for x in r.stderr.strip().splitlines() if x.startswith("error")]
    assert f"{ckpt}: give a zoo model name" in line and "MODEL --weights FILE" in line
    assert not (tmp_path / "export").exists()
