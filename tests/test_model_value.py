"""A module that is not in the zoo goes through every stage as a `Model` (module + card), with no
registration anywhere, and the files it writes reload onto it."""

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import edgecnn
from edgecnn.card import Card, Model, card_from
from edgecnn.errors import BadArgumentError, WeightsError
from edgecnn.runtime import available


def _block(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class SixLayers(nn.Module):
    """Six conv-BN-ReLU layers with a residual add, on grey images: nothing edgecnn ships."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem, self.a = _block(1, 32), _block(32, 96)
        self.b, self.c = _block(96, 96), _block(96, 96)
        self.d, self.e = _block(96, 128, 2), _block(128, 128)
        self.fc = nn.Linear(128, classes)

    def forward(self, x):
        x = self.a(self.stem(x))
        x = x + self.c(self.b(x))
        x = self.e(self.d(x))
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def mine():
    torch.manual_seed(0)
    net = SixLayers().eval()
    with torch.no_grad():  # BN statistics away from the identity, so folding has work to do
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 2.0)
    card = card_from(net, input_size=(32, 32), mean=(0.1307,), std=(0.3081,), name="sixlayers")
    return net, Model(net, card)


def test_card_from_reads_channels_and_classes_from_the_module(mine):
    net, model = mine
    assert (model.card.in_chans, model.card.num_classes, model.card.input_size) == (1, 10, (32, 32))
    assert model.card.mean == (0.1307,) and model.name == "sixlayers"
    assert card_from(net, input_size=(8, 8), mean=(0.5, 0.4, 0.3)).mean == pytest.approx((0.4,))  # grey
    with pytest.raises(BadArgumentError, match="does not run at 32x32x3"):
        card_from(net, input_size=(32, 32), in_chans=3)
    with pytest.raises(BadArgumentError, match="std must be positive"):
        Card("x", (32, 32), 1, 10, (0.0,), (0.0,))


def test_inspect_and_convert_a_module_and_reload_the_file_onto_it(mine, tmp_path):
    from edgecnn.analysis import inspect_model
    from edgecnn.transforms import SwapOptions, convert, load_model_file, save_converted

    net, model = mine
    stats = inspect_model(model)
    convs = [layer for layer in stats.layers if layer.type == "Conv2d"]
    assert len(convs) == 6 and stats.macs == sum(layer.macs for layer in stats.layers) > 0
    result = convert(model, fold_bn=True, separable=SwapOptions(rank=2))
    assert 0 < result.output_error < 1 and result.recipe["base"] == "module"
    assert result.macs_after < result.macs_before
    path = save_converted(result, tmp_path / "six.separable.safetensors")
    with pytest.raises(WeightsError, match="made from a module handed in from Python"):
        load_model_file(path)
    back = load_model_file(path, base=net)
    assert back.card == model.card and back.recipe["transforms"][-1]["name"] == "separable"
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(back.module(x), result.model(x))
    assert net.a[1].__class__ is nn.BatchNorm2d  # the caller's module is never changed


@pytest.mark.slow
@pytest.mark.skipif(not available("openvino"), reason="OpenVINO is not installed")
def test_a_module_compresses_exports_and_benches_with_no_zoo_entry(mine, tmp_path):
    from edgecnn.bench import BenchOptions, bench
    from edgecnn.compress import CompressOptions, compress
    from edgecnn.export import ExportOptions, export
    from edgecnn.runtime import get_runner
    from edgecnn.transforms import load_model_file

    net, model = mine
    out = tmp_path / "export"
    result = export(model, ExportOptions(targets=("onnx", "openvino"), out_dir=out, data="digits"))
    assert [t.status for t in result.targets] == ["ok", "ok"]
    for t in result.targets:  # checked against PyTorch on seeded and real digits
        assert {p.inputs.split(":")[0] for p in t.parity} >= {"seeded", "images"}
        assert all(p.passed for p in t.parity)
    assert {p.name for p in out.iterdir() if p.suffix in (".onnx", ".xml")} == {
        "sixlayers.onnx",
        "sixlayers.xml",
    }

    opts = CompressOptions(
        runtime="onnxruntime",
        speedup=1.3,
        distill_epochs=0,
        bn_batches=2,
        calib_images=16,
        test_images=50,
        measure_seconds=0.3,
        check_seconds=0.05,
        out_dir=tmp_path / "compress",
        cache_dir=tmp_path / "cache",
        rivals=False,  # the knapsack's plan alone: the rivals are tests/test_plan.py's
    )
    c = compress(model, opts)
    assert c.model == "sixlayers" and c.student_ms > 0 and c.test_set == "50 images from digits:test:first"
    assert [layer for layer in c.plan.layers if layer.kind != "keep"]
    student = load_model_file(c.student_path, base=net)  # the file reloads onto the module it came from
    x = np.random.default_rng(1).standard_normal((1, 1, 32, 32)).astype(np.float32)
    onnx = get_runner("onnxruntime", c.artifacts["student"]).run(x)
    with torch.no_grad():
        torch_y = student.module(torch.from_numpy(x)).numpy()
    assert np.allclose(onnx, torch_y, atol=1e-3, rtol=1e-3)
    # the student compress hands back is the Model its file describes, the same weights to the byte
    assert c.student.path == c.student_path and c.student.weights == student.weights
    assert c.student.recipe == student.recipe and c.student.card == student.card

    run = bench(
        [model, student],
        BenchOptions(
            runtimes=("torch", "onnxruntime"),
            min_seconds=0.05,
            warmup_s=0.05,
            min_iters=3,
            memory=False,
            export_dir=str(tmp_path / "bench"),
        ),
    )
    assert len(run.rows) == 4 and [r.error for r in run.rows if r.error] == []
    assert all(r.latency.median_ms > 0 for r in run.rows)
    assert {r.model for r in run.rows} == {"sixlayers"}


PACKAGE = Path(edgecnn.__file__).parent
CARD_FACTORIES = ("zoo", "card.py")  # where a name may become a spec, and a spec a card


def _spec_uses(source: str) -> list[int]:
    """Lines that look a model up by name (`get_spec(...)`) or read a zoo spec (`x.spec`)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        called = isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None))
        if called == "get_spec" or (isinstance(node, ast.Attribute) and node.attr == "spec"):
            lines.append(node.lineno)
    return sorted(lines)


def test_no_stage_looks_a_model_up_by_name_outside_the_zoo():
    found = [
        f"{path.relative_to(PACKAGE)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] not in CARD_FACTORIES
        for line in _spec_uses(path.read_text())
    ]
    assert not found, "take the card that travels with the model, not the zoo's spec:\n" + "\n".join(found)


def test_the_spec_scan_sees_both_kinds_of_use():
    assert _spec_uses("a = get_spec(name)\nb = loaded.spec.name\nc = zoo.get_spec('x')") == [1, 2, 3]
    assert _spec_uses("card = loaded.card\nsplit = splits.split") == []
