"""Loading weights safely: torchvision's pretrained sets or a local .pth/.pt/.safetensors file.

Nothing is unpickled beyond tensors (`torch.load(weights_only=True)`), and nothing reaches the network
unless the user asked for `imagenet` weights that are not cached yet.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

from edgecnn.card import WeightsInfo
from edgecnn.errors import WeightsError
from edgecnn.zoo.registry import ModelSpec

log = logging.getLogger(__name__)

PRETRAINED = "imagenet"
DOWNLOAD_TIMEOUT_S = (
    "60"  # seconds without data before a weights download gives up (EDGECNN_DOWNLOAD_TIMEOUT)
)
# Wrappers that training scripts commonly put around a state dict.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "ema", "state_dict_ema")


def read_state_dict(path: str | os.PathLike) -> dict:
    """Tensors from a checkpoint file, unwrapped from common containers; never executes pickled code."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise WeightsError(f"{path} is not a readable safetensors file ({_first_line(e)})") from None
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
            msg = _first_line(e)
            # weights_only=True names the class it refused ("Unsupported global"); garbage bytes fail on
            # an opcode instead ("Unsupported operand") and are simply not a checkpoint.
            if isinstance(e, pickle.UnpicklingError) and "Unsupported global" in str(e):
                raise WeightsError(
                    f"{path} holds pickled Python objects, not a plain state dict; refusing to unpickle it "
                    "(save it with torch.save(model.state_dict(), ...) or as .safetensors)"
                ) from None
            if isinstance(e, pickle.UnpicklingError):
                msg = "not a torch.save file, or a pickle that weights_only loading refuses"
            raise WeightsError(f"{path} is not a readable PyTorch checkpoint ({msg})") from None
    for key in _WRAPPER_KEYS:
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"{path} does not contain a state dict (found {type(obj).__name__})")
    bad = next((k for k, v in obj.items() if not isinstance(k, str) or not torch.is_tensor(v)), None)
    if bad is not None:
        raise WeightsError(f"{path} is not a state dict: entry {bad!r} is not a tensor")
    if all(k.startswith("module.") for k in obj):  # saved from DataParallel / DDP
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


def classifier_heads(model, num_classes: int) -> list[str]:
    """The layers that produce the class scores: every Linear with `num_classes` outputs, or in a
    model without one (SqueezeNet, FCN, U-Net), every 1x1 Conv2d with `num_classes` outputs. Any
    other layer that happens to have that many outputs keeps its weights anyway: only the tensors
    whose shapes differ from the checkpoint's are left fresh."""
    from torch import nn

    linear = [
        n for n, m in model.named_modules() if isinstance(m, nn.Linear) and m.out_features == num_classes
    ]
    if linear:
        return linear
    return [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and m.out_channels == num_classes and m.kernel_size == (1, 1)
    ]


def apply_state_dict(
    model,
    state: Mapping,
    *,
    name: str,
    origin: str,
    aux_prefixes: tuple[str, ...] = (),
    fresh_head: int | None = None,
    hint: str = "check --num-classes / --in-chans",
) -> None:
    """Load `state` into `model`, naming the first missing, unexpected or wrong-shaped tensor.

    fresh_head: the model's class count, to fine-tune: the classifier heads' tensors whose shapes
    differ from the checkpoint's (1000 ImageNet classes, 3 of the user's) keep their fresh init."""
    dropped = [k for k in state if k.startswith(aux_prefixes)] if aux_prefixes else []
    if dropped:
        log.info("dropping %d training-only tensors (%s...) from %s", len(dropped), dropped[0], origin)
        state = {k: v for k, v in state.items() if k not in set(dropped)}
    own = model.state_dict()
    if fresh_head is not None:
        heads = tuple(f"{h}." for h in classifier_heads(model, fresh_head))
        fresh = {
            k
            for k, v in state.items()
            if k.startswith(heads) and k in own and tuple(own[k].shape) != tuple(v.shape)
        }
        if fresh:
            log.info(
                "%s: a new %d-class head (%s) over the loaded weights",
                name,
                fresh_head,
                ", ".join(sorted(fresh)),
            )
        state = {k: v for k, v in state.items() if k not in fresh}
        own = {k: v for k, v in own.items() if k not in fresh}
    for key, value in state.items():
        if key not in own:
            raise WeightsError(f"{origin} does not fit {name}: unexpected tensor '{key}'")
        if tuple(own[key].shape) != tuple(value.shape):
            raise WeightsError(
                f"{origin} does not fit {name}: tensor '{key}' has shape {tuple(value.shape)}, "
                f"the model expects {tuple(own[key].shape)} ({hint})"
            )
        _check_values(key, value, own[key], origin)
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise WeightsError(
            f"{origin} does not fit {name}: missing tensor '{missing[0]}' ({len(missing)} in all)"
        )
    model.load_state_dict(state, strict=False)


def _check_values(key: str, value, expected, origin: str) -> None:
    """A floating-point parameter must come as finite floating-point values: integers would be cast
    silently, and NaN/inf weights make every output garbage (found later, far from the cause)."""
    import torch

    if not expected.is_floating_point():
        return
    if not value.is_floating_point():
        raise WeightsError(
            f"{origin}: tensor '{key}' holds {str(value.dtype).removeprefix('torch.')} values where the "
            "model has floating-point weights; this is not a weights file for it"
        )
    if not bool(torch.isfinite(value).all()):
        raise WeightsError(
            f"{origin}: tensor '{key}' has non-finite values (NaN or inf); the weights are broken"
        )


def pretrained_state_dict(spec: ModelSpec) -> tuple[dict, WeightsInfo]:
    """torchvision's default weights for `spec`, through torchvision's own download and cache."""
    if spec.torchvision_weights is None:
        raise WeightsError(
            f"no pretrained '{PRETRAINED}' weights are known for {spec.name}; pass a .pth/.safetensors file"
        )
    import torch
    import torchvision

    weights = torchvision.models.get_model_weights(spec.torchvision_weights).DEFAULT
    expected = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if not expected.is_file() and os.environ.get("EDGECNN_OFFLINE", "") not in ("", "0"):
        raise WeightsError(
            f"{weights} for {spec.name} is not cached and EDGECNN_OFFLINE is set: expected {expected}"
        )
    if not expected.is_file():
        log.warning("downloading %s to %s", weights.url, expected)
    try:
        state = _download(weights, expected)
    except Exception as e:  # URLError, OSError, timeout, hash mismatch...
        raise WeightsError(
            f"could not get {weights} for {spec.name} ({_first_line(e) or type(e).__name__}); "
            f"place the file at {expected}"
        ) from None
    return state, WeightsInfo(PRETRAINED, str(expected), None, str(weights))


def _download(weights, expected: Path) -> dict:
    """torchvision's download with a socket timeout (urllib has none: a stalled proxy would hang it
    for minutes), leaving no partial file behind when it fails."""
    import socket

    timeout = float(os.environ.get("EDGECNN_DOWNLOAD_TIMEOUT", DOWNLOAD_TIMEOUT_S))
    partials = set(expected.parent.glob(f"{expected.name}*.partial"))
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except Exception:
        for leftover in set(expected.parent.glob(f"{expected.name}*.partial")) - partials:
            leftover.unlink(missing_ok=True)
        raise
    finally:
        socket.setdefaulttimeout(previous)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
