"""Every spec's recorded params/MACs against a recomputation, and against published figures."""

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from edgecnn.analysis import analyze
from edgecnn.zoo import get_spec, list_models, load_model


def _meta_stats(name):
    loaded = load_model(name, device="meta")
    spec = get_spec(name)
    return spec, loaded.module, analyze(loaded.module, spec.input_size, in_chans=spec.in_chans, name=name)


@pytest.mark.parametrize("name", list_models())
def test_recorded_params_and_macs_match_recomputation(name):
    spec, model, stats = _meta_stats(name)
    assert stats.params == spec.params
    assert stats.macs == spec.macs
    # Per-layer rows add up to the totals (reused modules count their parameters once).
    assert sum(layer.params for layer in stats.layers) == stats.params
    # Independent count: torch's own FLOP counter (FLOPs = 2 x MACs).
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty(1, spec.in_chans, *spec.input_size, device="meta"))
    assert counter.get_total_flops() == 2 * stats.macs


@pytest.mark.parametrize("name", [n for n in list_models() if get_spec(n).torchvision_weights])
def test_torchvision_entries_match_torchvision_metadata(name):
    spec = get_spec(name)
    meta = torchvision.models.get_model_weights(name).DEFAULT.meta
    if not spec.aux_prefixes:  # torchvision counts the aux heads of GoogLeNet/Inception/FCN when present
        assert meta["num_params"] == spec.params
        assert meta["_ops"] == pytest.approx(spec.macs / 1e9, abs=1e-3)
    else:
        assert meta["num_params"] >= spec.params
    if spec.acc1 is not None:
        metrics = meta["_metrics"]["ImageNet-1K"]
        assert (metrics["acc@1"], metrics["acc@5"]) == (spec.acc1, spec.acc5)
    size = meta.get("min_size")
    if size:
        assert spec.min_input_size >= max(size)


@pytest.mark.parametrize(
    ("name", "published", "rel"),
    [
        ("lenet5", 60_000, 0.05),  # "about 60,000 parameters" (LeCun et al. 1998)
        ("alexnet2012", 62_378_344, 0),  # the single-tower AlexNet count
        ("xception", 22_855_952, 0),  # Keras Xception, trainable parameters
        ("unet", 31_030_000, 0.001),  # Ronneberger et al. U-Net, ~31.03M
    ],
)
def test_written_here_models_match_published_param_counts(name, published, rel):
    assert get_spec(name).params == pytest.approx(published, rel=rel)


def test_se_resnet50_adds_about_2_5m_params_to_resnet50():
    # Hu et al. 2018, section 4: "~2.5 million additional parameters beyond the ~25 million of ResNet-50".
    extra = get_spec("se_resnet50").params - get_spec("resnet50").params
    assert extra == pytest.approx(2_500_000, rel=0.05)
