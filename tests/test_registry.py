import pytest

from edgecnn.errors import UnknownNameError
from edgecnn.zoo import ModelSpec, get_spec, list_models, register

EXPECTED = {
    "lenet5",
    "alexnet",
    "alexnet2012",
    "zfnet",
    "vgg11",
    "vgg13",
    "vgg16",
    "vgg19",
    "vgg11_bn",
    "vgg13_bn",
    "vgg16_bn",
    "vgg19_bn",
    "googlenet",
    "inception_v3",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "wide_resnet50_2",
    "resnext50_32x4d",
    "densenet121",
    "se_resnet50",
    "xception",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "convnext_tiny",
    "fcn_resnet50",
    "unet",
}


def test_every_architecture_of_the_product_is_registered():
    assert set(list_models()) == EXPECTED


def test_pattern_and_filters():
    assert list_models("res*") == [
        "resnet101",
        "resnet152",
        "resnet18",
        "resnet34",
        "resnet50",
        "resnext50_32x4d",
    ]
    assert list_models(task="segmentation") == ["fcn_resnet50", "unet"]
    assert "vgg16_bn" in list_models(family="vgg")
    assert list_models("nothing*") == []


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownNameError) as e:
        get_spec("resnet5O")
    msg = str(e.value)
    assert "resnet50" in msg and "\n" not in msg
    assert e.value.suggestions[0] == "resnet50"


def test_duplicate_registration_raises():
    spec = get_spec("lenet5")
    with pytest.raises(ValueError, match="already registered"):
        register(spec)
    with pytest.raises(ValueError, match="module:function"):
        register(ModelSpec(name="x_bad_builder", family="x", builder="nocolon", params=0, macs=0))


def test_specs_are_frozen():
    spec = get_spec("resnet50")
    with pytest.raises(AttributeError):
        spec.params = 1
