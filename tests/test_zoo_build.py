"""Every registered model builds with real weights and runs a forward pass at a small input size."""

import pytest
import torch

from edgecnn.zoo import create_model, get_spec, list_models

# Builders that allocate > 100M parameters are still quick; the forward pass is at the smallest size.


def _small_size(spec):
    if spec.fixed_input:
        return spec.input_size
    return (max(spec.min_input_size, 64),) * 2


@pytest.mark.parametrize("name", list_models())
def test_build_and_forward(name):
    spec = get_spec(name)
    model = create_model(name)
    assert not model.training
    size = _small_size(spec)
    with torch.no_grad():
        out = model(torch.randn(2, spec.in_chans, *size))
    if isinstance(out, dict):  # torchvision segmentation models
        out = out["out"]
    assert out.shape[:2] == (2, spec.num_classes)
    if spec.task == "segmentation":
        assert out.dim() == 4
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["resnet18", "lenet5", "xception", "unet", "googlenet"])
def test_num_classes_and_in_chans_are_configurable(name):
    spec = get_spec(name)
    in_chans = 3 if spec.in_chans == 1 else 1
    model = create_model(name, num_classes=7, in_chans=in_chans)
    with torch.no_grad():
        out = model(torch.randn(1, in_chans, *_small_size(spec)))
    out = out["out"] if isinstance(out, dict) else out
    assert out.shape[1] == 7


def test_unet_same_padding_keeps_input_size():
    model = create_model("unet", padding="same")
    with torch.no_grad():
        out = model(torch.randn(1, 1, 64, 96))
    assert out.shape == (1, 2, 64, 96)


def test_unet_valid_padding_is_the_paper_layout():
    # 572 -> 388 in the paper; checked on the meta device to keep it free.
    model = create_model("unet", device="meta")
    assert model(torch.empty(1, 1, 572, 572, device="meta")).shape == (1, 2, 388, 388)
