"""The inspect numbers against the course tables and the papers."""

import pytest
import torch
from torch import nn

from edgecnn.analysis import analyze, format_shape, inspect_model
from edgecnn.errors import BadArgumentError

VGG16_CONV_WEIGHTS = [
    1_728,
    36_864,
    73_728,
    147_456,
    294_912,
    589_824,
    589_824,
    1_179_648,
    2_359_296,
    2_359_296,
    2_359_296,
    2_359_296,
    2_359_296,
]
VGG16_CONV_SHAPES = (
    ["224x224x64"] * 2 + ["112x112x128"] * 2 + ["56x56x256"] * 3 + ["28x28x512"] * 3 + ["14x14x512"] * 3
)


def test_vgg16_reproduces_the_course_table():
    stats = inspect_model("vgg16")
    convs = [layer for layer in stats.layers if layer.type == "Conv2d"]
    fcs = [layer for layer in stats.layers if layer.type == "Linear"]
    assert [c.weight_params for c in convs] == VGG16_CONV_WEIGHTS
    assert [format_shape(c.output_shape) for c in convs] == VGG16_CONV_SHAPES
    assert convs[0].activations == 224 * 224 * 64 == 3_211_264
    assert [f.weight_params for f in fcs] == [102_760_448, 16_777_216, 4_096_000]
    assert stats.params == 138_357_544
    assert sum(layer.bias_params for layer in stats.layers) == 13_416
    # input 150,528 + conv 13,547,520 + max-pool 1,530,368 + FC 9,192 values per image
    assert stats.activations == 15_237_608
    assert stats.activation_bytes_fp32 == 4 * 15_237_608
    assert stats.macs == pytest.approx(15.47e9, rel=1e-3)


def test_alexnet2012_layer_shapes():
    stats = inspect_model("alexnet2012")
    shapes = [
        format_shape(layer.output_shape)
        for layer in stats.layers
        if layer.type in ("Conv2d", "MaxPool2d", "Linear")
    ]
    assert shapes == [
        "55x55x96",
        "27x27x96",
        "27x27x256",
        "13x13x256",
        "13x13x384",
        "13x13x384",
        "13x13x256",
        "6x6x256",
        "4096",
        "4096",
        "1000",
    ]


def test_headline_param_counts():
    assert 58_000 < inspect_model("lenet5").params < 62_000
    resnet50 = inspect_model("resnet50")
    assert resnet50.params == 25_557_032
    assert resnet50.macs == pytest.approx(4.09e9, rel=2e-3)
    googlenet, alexnet = inspect_model("googlenet").params, inspect_model("alexnet").params
    assert googlenet == pytest.approx(6.6e6, rel=0.01) and alexnet == pytest.approx(61.1e6, rel=0.01)
    assert alexnet > 9 * googlenet


def test_custom_input_size_scales_macs():
    # At 448 every feature map is exactly twice as wide and high (448 = 14 x 32): conv MACs x4, FC fixed.
    big = inspect_model("resnet18", input_size=(448, 448))
    full = inspect_model("resnet18")
    fc = 512 * 1000
    assert big.params == full.params
    assert big.macs - fc == 4 * (full.macs - fc)


def test_macs_formulas_on_a_hand_checked_net():
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8*8*8 * 3*9 = 13,824
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # 8*8*8 * 1*9 = 4,608
        nn.ConvTranspose2d(8, 4, 2, stride=2),  # input 8*8*8 * 4*4 = 8,192
        nn.Flatten(),
        nn.Linear(4 * 16 * 16, 10),  # 10,240
    )
    stats = analyze(net, (8, 8))
    assert [layer.macs for layer in stats.layers] == [13_824, 4_608, 8_192, 0, 10_240]
    assert stats.activations == 3 * 64 + 512 + 512 + 1024 + 10  # flatten is a view, not counted


def test_reused_module_counts_params_once_and_macs_per_call():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 1, bias=False)

        def forward(self, x):
            return self.conv(self.conv(x))

    stats = analyze(Twice(), (2, 2), in_chans=4)
    assert [layer.weight_params for layer in stats.layers] == [16, 0]
    assert stats.params == 16 and stats.macs == 2 * 4 * 4 * 4


def test_too_small_input_is_a_clear_error():
    with pytest.raises(
        BadArgumentError, match=r"input 8x8 does not fit alexnet2012 \(it needs exactly 227x227\)"
    ):
        inspect_model("alexnet2012", input_size=(8, 8))
    with pytest.raises(BadArgumentError, match="smallest input"):
        inspect_model("inception_v3", input_size=(16, 16))
    with pytest.raises(BadArgumentError, match="positive"):
        inspect_model("resnet18", input_size=(0, 10))


def test_analysis_leaves_the_model_as_it_was():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    analyze(model, (5, 5), in_chans=1)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model[0]._forward_hooks


def test_the_catalog_holds_every_zoo_model_as_its_spec_counts_it():
    """`inspect` answers default configurations from the stored tables: each must exist and total
    what the registry says (the registry itself is checked against live builds elsewhere)."""
    from edgecnn.analysis import catalog_stats
    from edgecnn.zoo import get_spec, list_models

    for name in list_models("*"):
        stats, spec = catalog_stats(name), get_spec(name)
        assert stats is not None, f"{name} is not in the catalog: run python -m edgecnn.analysis"
        assert (stats.params, stats.macs) == (spec.params, spec.macs), name
        assert stats.input_shape == (1, spec.in_chans, *spec.input_size)


@pytest.mark.parametrize(
    "name", ["lenet5", "alexnet2012", "resnet18", "mobilenet_v2", "convnext_tiny", "unet"]
)
def test_the_catalog_is_what_a_live_analysis_gives(name):
    from edgecnn.analysis import catalog_stats

    assert catalog_stats(name).to_dict() == inspect_model(name, live=True).to_dict()


def test_anything_but_the_default_configuration_is_analysed_live():
    stored = inspect_model("resnet18")
    assert inspect_model("resnet18", input_size=(224, 224)) == stored  # the default, said explicitly
    other = inspect_model("resnet18", input_size=(112, 112))
    assert other.layers[0].output_shape == (1, 64, 56, 56) and other.macs < stored.macs
    fewer = inspect_model("resnet18", num_classes=10)
    assert fewer.layers[-1].output_shape == (1, 10) and fewer.params < stored.params
