"""Models from outside the zoo, named by reference wherever a zoo name goes: `timm:NAME` (one of
timm's architectures) and `path/to/file.py:function` or `package.module:function` (the user's code).

A model file made from user code records its builder. Reloading it imports that code only where the
user trusts it (as torch.hub's `trust_repo`): the builder named again, `--trust-code`, or
`trusting()` in Python. Building from a reference the caller names is trusted: they named the code.
timm's architectures are an installed library's, not a file's, and need no trust.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import inspect
import logging
import re
import sys
from pathlib import Path

from edgecnn.card import BUILDER, TIMM, Card, Model, WeightsInfo, card_from, fit_channels
from edgecnn.errors import BadArgumentError, MissingBackendError, UnknownNameError, WeightsError

log = logging.getLogger(__name__)

TIMM_PREFIX = "timm:"
DEFAULT_SIZE = (224, 224)  # a builder's input size when neither --input-size nor its module says
# names a builder function often has, where the file's name says more
GENERIC = ("build", "model", "create", "create_model", "get_model", "make", "make_model", "net")
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
# True (every builder) or the canonical references trusted in this context
_TRUSTED: contextvars.ContextVar[bool | frozenset] = contextvars.ContextVar(
    "edgecnn_trust", default=frozenset()
)


def kind_of(name) -> str | None:
    """TIMM or BUILDER for a reference to a model outside the zoo, None for anything else."""
    if not isinstance(name, str):
        return None
    if name.startswith(TIMM_PREFIX):
        return TIMM
    target, sep, function = name.rpartition(":")
    if sep and function.isidentifier() and (target.endswith(".py") or _DOTTED.fullmatch(target)):
        return BUILDER
    return None


def canonical(ref: str) -> str:
    """A builder reference as a model file records it: a file's path made absolute."""
    target, _, function = ref.rpartition(":")
    return f"{Path(target).resolve()}:{function}" if target.endswith(".py") else ref


# ---- trust ------------------------------------------------------------------------------------


def is_trusted(ref: str) -> bool:
    trusted = _TRUSTED.get()
    return trusted is True or canonical(ref) in trusted


def trust_state() -> bool | list[str]:
    """What is trusted now, as JSON (a child process is handed it)."""
    trusted = _TRUSTED.get()
    return True if trusted is True else sorted(trusted)


def set_trust(state: bool | list[str] | str = True) -> None:
    """Trust `state` (True: every builder; a reference or list of them) for the rest of this context:
    what the CLI's --trust-code does for its one command."""
    _TRUSTED.set(_merged(state))


def reset_trust() -> None:
    _TRUSTED.set(frozenset())


@contextlib.contextmanager
def trusting(state: bool | list[str] | str = True):
    """Within the block, model files made from the trusted builders (True: any) may import them."""
    token = _TRUSTED.set(_merged(state))
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def _merged(state) -> bool | frozenset:
    current = _TRUSTED.get()
    if state is True or current is True:
        return True
    if not state:
        return current
    refs = [state] if isinstance(state, str) else list(state)
    return frozenset({*current, *(canonical(r) for r in refs)})


def require_trust(ref: str, path) -> None:
    if not is_trusted(ref):
        raise WeightsError(
            f"{path} was built by Python code ({ref}); loading it runs that code: pass --trust-code if "
            f"you trust it (in Python: with edgecnn.zoo.trusting():)"
        )


# ---- building -----------------------------------------------------------------------------------


def build(ref: str, *, num_classes=None, in_chans=None, device=None, input_size=None, **kwargs) -> Model:
    """The `Model` `ref` names, with random weights: built by timm or by the user's function."""
    import torch

    kind = kind_of(ref)
    ref = canonical(ref) if kind == BUILDER else ref
    with torch.device(device or "cpu"):
        module = (
            _timm_module(ref, num_classes, in_chans, kwargs)
            if kind == TIMM
            else _user_module(ref, num_classes, in_chans, kwargs)
        )
    card = _card(ref, module, input_size, in_chans)
    if num_classes is not None and card.num_classes != num_classes:
        raise BadArgumentError(
            f"{ref} builds a {card.num_classes}-class model, not {num_classes}: its function must take "
            "num_classes= (or give the model as many classes as your data)"
        )
    base = {"kind": kind, "name": ref, "kwargs": kwargs}
    return Model(module.eval(), card, WeightsInfo("random"), base)


def card(ref: str, **changes) -> Card:
    """The card of `ref` built with its defaults (timm: from its pretrained config, without building)."""
    if kind_of(ref) == TIMM:
        size = changes.pop("input_size", None)
        cfg = _timm_cfg(ref.removeprefix(TIMM_PREFIX))
        base = _timm_card(ref, cfg, changes.pop("in_chans", None), changes.pop("num_classes", None))
        card = base.at_size(size) if size else base
        return card.replace(**{k: v for k, v in changes.items() if v is not None})
    size = changes.pop("input_size", None)
    loaded = build(ref, device="meta", input_size=size, in_chans=changes.pop("in_chans", None))
    return loaded.card.replace(**{k: v for k, v in changes.items() if v is not None})


def _card(ref: str, module, input_size, in_chans) -> Card:
    """timm's pretrained config, or for user code its `pretrained_cfg` / `default_cfg` dict where it
    has one (timm's convention), else the input size asked (224 x 224) and ImageNet's statistics."""
    if kind_of(ref) == TIMM:
        cfg = dict(getattr(module, "pretrained_cfg", None) or {})
        card = _timm_card(ref, cfg, in_chans, getattr(module, "num_classes", None))
        return card.at_size(input_size) if input_size else card
    cfg = getattr(module, "pretrained_cfg", None) or getattr(module, "default_cfg", None) or {}
    size = tuple(input_size or tuple(cfg.get("input_size", (0, *DEFAULT_SIZE)))[-2:])
    classes = _last_linear_outputs(module)
    return card_from(
        module,
        input_size=size,
        name=_display_name(ref),
        in_chans=in_chans,
        num_classes=classes,
        mean=cfg.get("mean"),
        std=cfg.get("std"),
    )


def short_name(name: str) -> str:
    """What tables and output folders call the model `name` references (itself for a zoo name)."""
    kind = kind_of(name)
    return name.removeprefix(TIMM_PREFIX) if kind == TIMM else _display_name(name) if kind else name


def _display_name(ref: str) -> str:
    """What tables and output folders call a builder's model: the function, or the file's name for a
    generic function name (mynet.py:build -> mynet)."""
    target, _, function = ref.rpartition(":")
    stem = Path(target).stem if target.endswith(".py") else target.rpartition(".")[2]
    return stem if function.lower() in GENERIC else function


def _last_linear_outputs(module) -> int | None:
    from torch import nn

    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else None


def _user_module(ref: str, num_classes, in_chans, kwargs: dict):
    """Call the user's function with its keyword arguments (num_classes and in_chans where it takes
    them); what it returns must be an nn.Module."""
    from torch import nn

    fn = _import_function(ref)
    params = inspect.signature(fn).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    extra = {k: v for k, v in (("num_classes", num_classes), ("in_chans", in_chans)) if v is not None}
    call = {**{k: v for k, v in extra.items() if takes_any or k in params}, **kwargs}
    try:
        module = fn(**call)
    except TypeError as e:
        raise BadArgumentError(
            f"{ref}: calling it with {sorted(call) or 'no arguments'} failed ({e})"
        ) from None
    if not isinstance(module, nn.Module):
        raise BadArgumentError(f"{ref} returned {type(module).__name__}, not a torch.nn.Module")
    return module


def _import_function(ref: str):
    """The function `ref` names, its file or module imported once per process."""
    import importlib
    import importlib.util

    target, _, function = ref.rpartition(":")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise BadArgumentError(f"builder file not found: {target}")
        name = f"edgecnn_user_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as e:
                del sys.modules[name]
                raise BadArgumentError(f"importing {target} failed: {type(e).__name__}: {e}") from None
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise BadArgumentError(f"cannot import {target} ({e}); is it on PYTHONPATH?") from None
    fn = getattr(module, function, None)
    if not callable(fn):
        raise BadArgumentError(f"{target} has no function {function!r}")
    return fn


def _timm():
    try:
        import timm
    except ImportError:
        raise MissingBackendError(
            "timm is not installed; install it with: pip install 'edgecnn[timm]'"
        ) from None
    return timm


def _timm_name(ref: str) -> str:
    timm = _timm()
    name = ref.removeprefix(TIMM_PREFIX)
    if not timm.is_model(name):
        raise UnknownNameError("timm model", name, timm.list_models())
    return name


def _timm_cfg(name: str) -> dict:
    from timm.models import get_pretrained_cfg

    _timm_name(name)
    cfg = get_pretrained_cfg(name)
    return cfg.to_dict() if cfg is not None else {}


def _timm_module(ref: str, num_classes, in_chans, kwargs: dict):
    timm = _timm()
    name = _timm_name(ref)
    args = {k: v for k, v in (("num_classes", num_classes), ("in_chans", in_chans)) if v is not None}
    try:
        return timm.create_model(name, pretrained=False, **args, **kwargs)
    except TypeError as e:
        raise BadArgumentError(f"bad option for timm:{name}: {e}") from None


def _timm_card(ref: str, cfg: dict, in_chans, num_classes) -> Card:
    """A card from timm's pretrained config: input size, mean/std, crop (resize before the centre
    crop), classes."""
    chans = in_chans or 3
    size = tuple(int(v) for v in tuple(cfg.get("input_size") or (3, *DEFAULT_SIZE))[-2:])
    crop = cfg.get("crop_pct")
    return Card(
        name=ref.removeprefix(TIMM_PREFIX),
        input_size=size,
        in_chans=chans,
        num_classes=num_classes or cfg.get("num_classes") or 1000,
        mean=fit_channels(cfg.get("mean") or (0.485, 0.456, 0.406), chans),
        std=fit_channels(cfg.get("std") or (0.229, 0.224, 0.225), chans),
        resize_size=round(min(size) / crop) if crop else None,
    )


def load(ref: str, *, weights=None, num_classes=None, in_chans=None, device=None, reset_head=False, **kwargs):
    """`load_model` for a reference (which checks the arguments first): built, then `weights` (a
    checkpoint file) loaded safely; with reset_head a head of another class count starts fresh."""
    from edgecnn.artifacts import sha256_file
    from edgecnn.zoo.weights import apply_state_dict, read_state_dict

    if weights is not None and Path(str(weights)).suffix not in (".pth", ".pt", ".bin", ".safetensors"):
        raise WeightsError(f"{ref}: give --weights a .pth/.pt/.safetensors checkpoint file, got {weights}")
    loaded = build(ref, num_classes=num_classes, in_chans=in_chans, device=device, **kwargs)
    if weights is None:
        return loaded
    path = Path(weights)
    head = loaded.num_classes if reset_head else None
    apply_state_dict(loaded.module, read_state_dict(path), name=ref, origin=str(path), fresh_head=head)
    loaded.weights = WeightsInfo("file", str(path.resolve()), sha256_file(path))
    return loaded


def list_timm(pattern: str = "*") -> list[str]:
    """timm's architectures matching `pattern` (fnmatch), as `timm:NAME` references."""
    return [TIMM_PREFIX + n for n in _timm().list_models(pattern)]
