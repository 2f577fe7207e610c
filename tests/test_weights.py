"""Weights: local .pth / .safetensors round trips, torchvision's cache, and every bad-file error."""

import pickle

import pytest
import torch
from _zoo import representatives
from safetensors.torch import save_file

from edgecnn.errors import BadArgumentError, WeightsError
from edgecnn.zoo import create_model, list_models, load_model


@pytest.fixture
def lenet():
    return create_model("lenet5")


def _same_outputs(a, b, shape=(2, 1, 32, 32)):
    x = torch.randn(*shape)
    with torch.no_grad():
        return torch.allclose(a(x), b(x))


def test_pth_round_trip_reproduces_outputs(tmp_path, lenet):
    path = tmp_path / "lenet.pth"
    torch.save(lenet.state_dict(), path)
    loaded = load_model("lenet5", weights=path)
    assert loaded.weights.source == "file" and len(loaded.weights.sha256) == 64
    assert _same_outputs(lenet, loaded.module)


def test_safetensors_round_trip_reproduces_outputs(tmp_path, lenet):
    path = tmp_path / "lenet.safetensors"
    save_file({k: v.contiguous() for k, v in lenet.state_dict().items()}, str(path))
    assert _same_outputs(lenet, create_model("lenet5", weights=path))


def test_wrapped_and_ddp_checkpoints_load(tmp_path, lenet):
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in lenet.state_dict().items()}}, path)
    assert _same_outputs(lenet, create_model("lenet5", weights=path))


def test_aux_heads_in_a_checkpoint_are_dropped(tmp_path):
    import torchvision

    full = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True).eval()
    path = tmp_path / "googlenet.pth"
    torch.save(full.state_dict(), path)
    model = create_model("googlenet", weights=path)
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        assert torch.allclose(model(x), full(x))


def test_wrong_shape_names_the_tensor(tmp_path):
    path = tmp_path / "lenet100.pth"
    torch.save(create_model("lenet5", num_classes=100).state_dict(), path)
    with pytest.raises(WeightsError, match=r"tensor 'classifier.5.weight' has shape \(100, 84\)"):
        create_model("lenet5", weights=path)


def test_missing_and_unexpected_keys_are_named(tmp_path, lenet):
    state = lenet.state_dict()
    path = tmp_path / "missing.pth"
    torch.save({k: v for k, v in state.items() if k != "features.0.bias"}, path)
    with pytest.raises(WeightsError, match=r"missing tensor 'features\.0\.bias'"):
        create_model("lenet5", weights=path)
    torch.save({**state, "extra.weight": torch.zeros(1)}, path)
    with pytest.raises(WeightsError, match=r"unexpected tensor 'extra\.weight'"):
        create_model("lenet5", weights=path)


def test_corrupt_files_are_one_line_errors(tmp_path):
    for name in ("bad.pth", "bad.safetensors"):
        path = tmp_path / name
        path.write_bytes(b"\x00garbage" * 100)
        with pytest.raises(WeightsError) as e:
            create_model("lenet5", weights=path)
        assert "\n" not in str(e.value) and name in str(e.value)


def test_truncated_checkpoint_is_an_error(tmp_path, lenet):
    path = tmp_path / "trunc.pth"
    torch.save(lenet.state_dict(), path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        create_model("lenet5", weights=path)


def test_pickled_module_is_refused_not_unpickled(tmp_path, lenet):
    path = tmp_path / "whole_model.pth"
    torch.save(lenet, path)  # a pickle of the module object, which would run code to load
    with pytest.raises(WeightsError, match="refusing to unpickle"):
        create_model("lenet5", weights=path)


def test_arbitrary_pickle_payload_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(WeightsError):
        create_model("lenet5", weights=path)
    assert not marker.exists()


def test_non_state_dict_contents_are_errors(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(WeightsError, match="does not contain a state dict"):
        create_model("lenet5", weights=path)
    torch.save({"a": 1}, path)
    with pytest.raises(WeightsError, match="entry 'a' is not a tensor"):
        create_model("lenet5", weights=path)


def test_bad_paths_and_suffixes(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        create_model("lenet5", weights=tmp_path / "nope.pth")
    with pytest.raises(WeightsError, match="unsupported weights"):
        create_model("lenet5", weights="weights.h5")


def test_imagenet_uncached_offline_names_the_expected_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsError) as e:
        create_model("resnet18", weights="imagenet")
    msg = str(e.value)
    assert str(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in msg and "\n" not in msg


def test_imagenet_from_torchvision_cache(tmp_path, monkeypatch):
    # Put a state dict where torchvision's own cache looks for it: the real loading path runs offline.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = create_model("resnet18")
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference.state_dict(), cache / "resnet18-f37072fd.pth")
    loaded = load_model("resnet18", weights="imagenet")
    assert loaded.weights.source == "imagenet" and "ResNet18_Weights.IMAGENET1K_V1" in loaded.weights.detail
    assert _same_outputs(reference, loaded.module, (1, 3, 64, 64))
    # A grey-scale stem sums the RGB filters, so a grey image gives the same logits as its RGB copy.
    grey = create_model("resnet18", weights="imagenet", in_chans=1)
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(grey(x), reference(x.repeat(1, 3, 1, 1)), atol=1e-4)


def test_imagenet_weights_are_errors_where_they_cannot_apply():
    with pytest.raises(WeightsError, match="no pretrained"):
        create_model("lenet5", weights="imagenet")
    with pytest.raises(BadArgumentError, match="1000 classes, not 10"):
        create_model("resnet18", weights="imagenet", num_classes=10)  # without reset_head


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda t: t.to(torch.int64), r"tensor 'features\.0\.weight' holds int64 values"),
        (lambda t: t.index_fill(0, torch.tensor([0]), float("nan")), r"'features\.0\.weight' has non-finite"),
        (lambda t: t.index_fill(0, torch.tensor([1]), float("inf")), r"'features\.0\.weight' has non-finite"),
    ],
)
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_that_are_not_what_they_claim_are_refused_at_load(tmp_path, lenet, tamper, message, suffix):
    state = {k: v.clone() for k, v in lenet.state_dict().items()}
    state["features.0.weight"] = tamper(state["features.0.weight"])
    path = tmp_path / f"bad{suffix}"
    torch.save(state, path) if suffix == ".pth" else save_file(state, str(path))
    with pytest.raises(WeightsError, match=message) as e:
        create_model("lenet5", weights=path)
    assert "\n" not in str(e.value)


def test_a_stalled_download_times_out_and_leaves_nothing(tmp_path):
    """A proxy that accepts the connection and never answers: the download gives up after
    EDGECNN_DOWNLOAD_TIMEOUT seconds with one line, and no partial file is left in the cache. The
    proxy is a local socket; nothing leaves this machine."""
    import os
    import socket
    import subprocess
    import sys
    import threading
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held = []
    threading.Thread(target=lambda: held.append(server.accept()), daemon=True).start()
    port = server.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "EDGECNN_OFFLINE" and "proxy" not in k.lower()}
    proxy = f"http://127.0.0.1:{port}"
    env.update(TORCH_HOME=str(tmp_path), EDGECNN_DOWNLOAD_TIMEOUT="2", https_proxy=proxy, http_proxy=proxy)
    t0 = time.time()
    r = subprocess.run(
        [sys.executable, "-m", "edgecnn", "inspect", "resnet18", "--weights", "imagenet"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    server.close()
    assert r.returncode == 2 and r.stderr.count("error:") == 1 and "Traceback" not in r.stderr, r.stderr
    assert "could not get" in r.stderr and "timed out" in r.stderr, r.stderr
    assert time.time() - t0 < 60 and held  # it did try, through the proxy, and gave up
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def _constant(key: str, meta):
    """A cheap stand-in for a checkpoint tensor that keeps activations in range: weights averaging
    their inputs (scaled per output), unit norm scales and variances, zero biases and means."""
    if not meta.is_floating_point():
        return torch.zeros(meta.shape, dtype=meta.dtype)
    if meta.ndim >= 2:  # outputs scaled apart, so a norm over channels does not zero them all
        scale = 1 + 0.5 * torch.cos(torch.arange(meta.shape[0], dtype=torch.float32))
        return torch.full(meta.shape, 1.0 / max(1, meta[0].numel())) * scale.view(-1, *[1] * (meta.ndim - 1))
    one = key.endswith(("running_var", "weight"))
    return torch.full(meta.shape, 1.0 if one else 0.0)


@pytest.mark.parametrize("name", representatives(list_models("*")))
def test_every_zoo_model_can_be_fine_tuned_to_three_classes(name):
    """Between the checkpoint's class count and 3 classes the tensors that differ are exactly the
    classifier heads' (aux heads included); fine-tuning loads all the rest, and a training step
    moves the new head. Built from shapes with constant weights (a random init of VGG alone takes
    seconds): what is tested is the head swap and that the model trains, not what it learns."""
    from edgecnn.zoo import get_spec
    from edgecnn.zoo.weights import apply_state_dict, classifier_heads

    spec = get_spec(name)
    theirs = {k: _constant(k, v) for k, v in load_model(name, device="meta").module.state_dict().items()}
    ours = load_model(name, num_classes=3, device="meta").module
    heads = classifier_heads(ours, 3)
    prefixes = tuple(f"{h}." for h in heads)
    differ = {k for k, v in ours.state_dict().items() if k in theirs and theirs[k].shape != v.shape}
    assert heads and differ and all(k.startswith(prefixes) for k in differ), (spec.name, heads, differ)

    ours = ours.to_empty(device="cpu")
    for head in heads:
        ours.get_submodule(head).reset_parameters()  # what load_model's fresh build gives the head
    apply_state_dict(ours, theirs, name=spec.name, origin="checkpoint", fresh_head=3)
    assert all(torch.equal(v, theirs[k]) for k, v in ours.state_dict().items() if not k.startswith(prefixes))
    size = spec.input_size if spec.fixed_input else (spec.min_input_size,) * 2
    head = [p for h in heads for p in ours.get_submodule(h).parameters()]
    for p in ours.parameters():  # the step of `--freeze-epochs`: the new head alone (and cheap)
        p.requires_grad_(any(p is q for q in head))
    out = ours.train()(torch.randn(2, spec.in_chans, *size))
    out = out["out"] if isinstance(out, dict) else getattr(out, "logits", out)
    assert out.shape[1] == 3
    labels = torch.tensor([0, 2]).view(2, *([1] * (out.ndim - 2))).expand(2, *out.shape[2:])
    loss = torch.nn.functional.cross_entropy(out, labels)
    before = [p.detach().clone() for p in head]
    loss.backward()
    torch.optim.SGD(head, lr=0.1).step()
    assert torch.isfinite(loss) and any(not torch.equal(b, p) for b, p in zip(before, head, strict=True))
