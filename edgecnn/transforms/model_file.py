"""Converted models on disk: one safetensors file whose header holds the recipe that rebuilds it.

The recipe names its base (a zoo model with its build options, or a module the caller hands in
again at load time), the model's card, and every transform with its per-layer ranks. Reloading
rebuilds the base, replays the recipe's structure and loads the tensors: no pickle, no code import.
`load_source` is the one way every command turns "a Model, a zoo name or a model file" into a Model.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from edgecnn.artifacts import atomic_output, sha256_file
from edgecnn.card import BUILDER, MODULE, TIMM, ZOO
from edgecnn.errors import BadArgumentError, UnknownNameError, WeightsError
from edgecnn.lazy import import_string

FORMAT = "edgecnn-model/1"
LEGACY_FORMATS = ("edgecnn-converted/1",)  # read as well: the same recipe, before trained files had it
# What a model made from another (converted, distilled, compressed) inherits from its source's header.
INHERITED = ("class_names", "data", "mean", "std")
# What the header's "card" holds beside the fields it has of its own (input_size, in_chans, ...).
CARD_FIELDS = ("name", "resize_size", "task", "fixed_input", "min_input_size")
# Transform name -> structural replay, imported only when a converted model is loaded.
_REPLAY = {
    "fold_bn": "edgecnn.transforms.fold_bn:replay",
    "separable": "edgecnn.transforms.separable:replay",
    "bottleneck": "edgecnn.transforms.bottleneck:replay",
    "lowrank": "edgecnn.transforms.lowrank:replay",
    "prune": "edgecnn.transforms.prune:replay",
}


def model_recipe(loaded, input_size, transforms=(), **extra) -> dict:
    """The header of a model file: what rebuilds it (its base: a zoo name with build options, or a
    module handed in from Python; every transform with its ranks) and its card (classes, input size,
    mean/std), plus where its data and test split came from, so that no later command needs
    --num-classes, --input-size or --data repeated."""
    from dataclasses import asdict

    previous = loaded.recipe or {}
    recipe = {
        "format": FORMAT,
        "model": loaded.card.name,
        "base": loaded.base.get("kind", ZOO),
        "num_classes": loaded.num_classes,
        "in_chans": loaded.in_chans,
        "model_kwargs": loaded.base.get("kwargs", {}),
        "input_size": [int(v) for v in input_size],
        "base_weights": previous.get("base_weights") or asdict(loaded.weights),
        "transforms": list(previous.get("transforms", [])) + list(transforms),
    }
    if recipe["base"] in (TIMM, BUILDER):  # what rebuilds it: the reference, not the card's short name
        recipe["builder"] = loaded.base["name"]
    recipe.update({k: previous[k] for k in INHERITED if k in previous})
    recipe.update({k: v for k, v in extra.items() if v is not None})
    card = loaded.card.at_size(recipe["input_size"])
    recipe.setdefault("mean", list(card.mean))
    recipe.setdefault("std", list(card.std))
    # The card's other fields; size, channels, classes and mean/std are the header's own fields above.
    fields = card.to_dict()
    recipe["card"] = {k: fields[k] for k in CARD_FIELDS}
    return recipe


def input_size_of(loaded, given=None) -> tuple[int, int]:
    """--input-size if given, else the card's (a model file's recorded size, a zoo model's default)."""
    return tuple(given or loaded.card.input_size)


def save_converted(result, path: str | Path, *, force: bool = False) -> Path:
    """Write the converted weights and recipe atomically to a .safetensors file."""
    result.path = str(save_with_recipe(result.model, result.recipe, path, force=force))
    return Path(result.path)


def save_with_recipe(model, recipe: dict, path: str | Path, *, force: bool = False) -> Path:
    """A converted model (e.g. after distillation changed its weights) with the recipe that rebuilds it."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise BadArgumentError(f"converted models are saved as .safetensors, got {path.name}")
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {"edgecnn": json.dumps(recipe), "format": FORMAT}
    with atomic_output(path, force=force) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


def read_recipe(path: str | Path) -> dict:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise WeightsError(f"{path} is not a readable safetensors file ({e})") from None
    if meta.get("format") not in (FORMAT, *LEGACY_FORMATS) or "edgecnn" not in meta:
        raise WeightsError(
            f"{path} is not an edgecnn model file (no '{FORMAT}' recipe in its header); "
            "for plain weights use MODEL --weights FILE"
        )
    try:
        recipe = json.loads(meta["edgecnn"])
    except json.JSONDecodeError as e:
        raise WeightsError(
            f"{path}: its recipe header is not valid JSON ({e}); the file was altered"
        ) from None
    return check_recipe(recipe, path)


def check_recipe(recipe, path) -> dict:
    """Every field the rebuild reads, checked before anything is built: a tampered or foreign header
    is a one-line error naming the field, not a KeyError deep inside a replay."""

    def bad(field: str, why: str):
        raise WeightsError(f"{path}: recipe field '{field}' {why}; the file was altered or is not edgecnn's")

    if not isinstance(recipe, dict):
        bad("(header)", "is not a JSON object")
    from edgecnn.zoo import list_models

    kinds = (ZOO, MODULE, TIMM, BUILDER)
    if recipe.get("base", ZOO) not in kinds:
        bad("base", f"must be one of {', '.join(kinds)}, got {recipe.get('base')!r}")
    if recipe.get("base") in (TIMM, BUILDER):
        from edgecnn.zoo.external import kind_of

        if kind_of(recipe.get("builder")) != recipe["base"]:
            bad(
                "builder",
                f"must name the {recipe['base']} reference that builds it, got {recipe.get('builder')!r}",
            )
    if recipe.get("base", ZOO) == ZOO and recipe.get("model") not in list_models():
        bad("model", f"must name a zoo model, got {recipe.get('model')!r}")
    if not isinstance(recipe.get("model"), str) or not recipe["model"]:
        bad("model", f"must name the model, got {recipe.get('model')!r}")
    size = recipe.get("input_size")
    if not (isinstance(size, list) and len(size) == 2 and all(type(v) is int and v >= 1 for v in size)):
        bad("input_size", f"must be [height, width] in pixels, got {size!r}")
    for key in ("num_classes", "in_chans"):
        value = recipe.get(key)
        if type(value) is not int or value < 1:
            bad(key, f"must be a positive integer, got {value!r}")
    if not isinstance(recipe.get("model_kwargs", {}), dict):
        bad("model_kwargs", "must be an object")
    _check_description(recipe, bad)
    steps = recipe.get("transforms")
    if not isinstance(steps, list):
        bad("transforms", f"must be a list of steps, got {steps!r}")
    for i, step in enumerate(steps):
        where = f"transforms[{i}]"
        if not isinstance(step, dict) or not isinstance(step.get("name"), str):
            bad(where, "has no transform name")
        if step["name"] not in _REPLAY:
            raise WeightsError(f"{path} uses transform '{step['name']}', unknown to this edgecnn version")
        if step["name"] == "fold_bn":
            pairs = step.get("pairs")
            if not isinstance(pairs, list) or not all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(n, str) for n in p) for p in pairs
            ):
                bad(f"{where}.pairs", "must be a list of [conv, bn] layer names")
            continue
        layers = step.get("layers")
        if not isinstance(layers, dict) or not layers:
            bad(f"{where}.layers", "must map layer names to ranks")
        check = _check_kept if step["name"] == "prune" else _check_ranks
        for name, value in layers.items():
            check(value, f"{where}.layers.{name}", bad)
    return recipe


def _check_ranks(value, field: str, bad) -> None:
    ranks = value if isinstance(value, list) else [value]
    if not ranks or not all(type(r) is int and r >= 1 for r in ranks):
        bad(field, f"must be a positive integer rank, got {value!r}")


def _check_kept(value, field: str, bad) -> None:
    """A pruned layer's kept channels: {"out": [...], "in": [...]}, each increasing indices >= 0."""
    if not isinstance(value, dict) or not value or set(value) - {"out", "in"}:
        bad(field, "must map 'out' and/or 'in' to kept channel indices")
    for dim, kept in value.items():
        if not (
            isinstance(kept, list)
            and kept
            and all(type(i) is int and i >= 0 for i in kept)
            and all(a < b for a, b in itertools.pairwise(kept))
        ):
            bad(f"{field}.{dim}", "must list kept channel indices, increasing from 0")


def _check_description(recipe: dict, bad) -> None:
    """The descriptive fields (optional: files from before they existed lack them)."""
    names = recipe.get("class_names")
    if names is not None and not (
        isinstance(names, list)
        and len(names) == recipe["num_classes"]
        and all(isinstance(n, str) for n in names)
    ):
        bad("class_names", f"must list {recipe['num_classes']} class names")
    for key in ("mean", "std"):
        values = recipe.get(key)
        if values is not None and not (
            isinstance(values, list)
            and len(values) == recipe["in_chans"]
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
            and (key == "mean" or all(v > 0 for v in values))
        ):
            bad(key, f"must hold {recipe['in_chans']} numbers (one per channel)")
    card = recipe.get("card")
    if card is not None:
        if not isinstance(card, dict) or set(card) - set(CARD_FIELDS):
            bad("card", f"must be an object of {', '.join(CARD_FIELDS)}")
        try:
            card_of(recipe)
        except BadArgumentError as e:
            bad("card", str(e))
    if recipe.get("data") is not None:
        from edgecnn.data.splits import recorded_split

        try:
            recorded_split(recipe)
        except (ValueError, TypeError) as e:
            bad("data", str(e))


def card_of(recipe: dict):
    """The card a model file's header describes; files from before cards: the zoo's, with what the
    header records."""
    from edgecnn.card import Card

    names = recipe.get("class_names")
    fields = {
        "num_classes": recipe["num_classes"],
        "in_chans": recipe["in_chans"],
        "mean": tuple(recipe["mean"]) if recipe.get("mean") else None,
        "std": tuple(recipe["std"]) if recipe.get("std") else None,
        "class_names": tuple(names) if names else None,
    }
    if recipe.get("card") is not None:
        card = recipe["card"]
        return Card.from_dict({**card, **fields, "input_size": recipe["input_size"]})
    from edgecnn.zoo import card_for

    return card_for(recipe["model"], input_size=tuple(recipe["input_size"]), **fields)


def _base_module(recipe: dict, path: Path, base):
    """The structure the recipe's transforms replay onto: the zoo's build (shapes only: every tensor
    comes from the file) or a copy of the module the caller handed in."""
    import copy

    from edgecnn.zoo import load_model

    if recipe.get("base", ZOO) == MODULE:
        if base is None:
            raise WeightsError(
                f"{path} was made from a module handed in from Python ({recipe['model']}): load it with "
                "load_model_file(path, base=module), giving that module"
            )
        return copy.deepcopy(getattr(base, "module", base)).cpu(), {"kind": MODULE}
    if recipe.get("base") == BUILDER:
        from edgecnn.zoo.external import require_trust

        require_trust(recipe["builder"], path)  # before anything of the user's code is imported
    try:
        built = load_model(
            recipe.get("builder") or recipe["model"],
            num_classes=recipe["num_classes"],
            in_chans=recipe["in_chans"],
            device="meta",
            **recipe.get("model_kwargs", {}),
        )
    except (UnknownNameError, BadArgumentError, TypeError) as e:
        raise WeightsError(f"{path}: its recipe does not build a model ({e})") from None
    return built.module, built.base


def load_model_file(path: str | Path, *, base=None):
    """Rebuild a `Model` from its file: its base (the zoo's build, or `base`, the module it was made
    from), the structural replay of its transforms (none for a trained model), then the tensors."""
    from edgecnn.zoo.weights import apply_state_dict, read_state_dict

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"model file not found: {path}")
    recipe = read_recipe(path)
    model, base_info = _base_module(recipe, path, base)
    for i, step in enumerate(recipe["transforms"]):
        try:
            import_string(_REPLAY[step["name"]])(model, step)
        except (AttributeError, KeyError, TypeError, ValueError, IndexError) as e:
            raise WeightsError(
                f"{path}: recipe step transforms[{i}] ({step['name']}) does not fit {recipe['model']} "
                f"({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})"
            ) from None
    if any(t.is_meta for t in model.parameters()):
        model = model.to_empty(device="cpu")
    hint = "its header does not describe its tensors: the file was altered"
    apply_state_dict(model, read_state_dict(path), name=recipe["model"], origin=str(path), hint=hint)
    return saved_model(model.eval(), recipe, path, base_info)


def saved_model(module, recipe: dict, path: str | Path, base: dict):
    """The `Model` the model file at `path` describes, given the module it holds: what a stage that
    has just saved a module hands on, equal to what `load_model_file` would read back."""
    from edgecnn.card import Model, WeightsInfo

    path = Path(path)
    weights = WeightsInfo(
        "converted" if recipe["transforms"] else "file",
        str(path.resolve()),
        sha256_file(path),
        ", ".join(s["name"] for s in recipe["transforms"]) or None,
    )
    return Model(module, card_of(recipe), weights, base, recipe, str(path))


def load_source(source, weights=None, num_classes=None, in_chans=None, model_kwargs=None):
    """A `Model` from what a user names: a Model (as it is), a zoo name (with optional weights) or a
    model file (.safetensors written by train, convert, distill or compress)."""
    from edgecnn.card import Model
    from edgecnn.zoo import load_model
    from edgecnn.zoo.registry import refuse_file

    if isinstance(source, Model):
        if weights is not None or num_classes is not None or in_chans is not None:
            raise BadArgumentError("weights, num_classes and in_chans go with a zoo model name")
        return source
    if str(source).endswith(".safetensors"):
        if weights is not None:
            raise BadArgumentError("--weights goes with a zoo model name, not a model file")
        if Path(source).is_file() and not _is_model_file(source):
            raise BadArgumentError(
                f"{source} holds plain weights, not an edgecnn model file: use MODEL --weights {source}"
            )
        loaded = load_model_file(source)
        for flag, given, own in (
            ("num-classes", num_classes, loaded.num_classes),
            ("in-chans", in_chans, loaded.in_chans),
        ):
            if given is not None and given != own:
                raise BadArgumentError(
                    f"{source} has {flag.replace('-', ' ')} {own}, not {given}: "
                    f"--{flag} goes with a zoo model name"
                )
        return loaded
    refuse_file(source)  # a file that is not a model edgecnn rebuilds
    kwargs = model_kwargs or {}
    if weights is not None and _names_its_builder(source, weights):  # the builder named again: trusted
        from edgecnn.zoo.external import trusting

        with trusting(source):
            return load_source(weights, None, num_classes, in_chans)
    return load_model(source, weights=weights, num_classes=num_classes, in_chans=in_chans, **kwargs)


def reads_model_file(source, weights) -> bool:
    """Whether `source` (with `weights`) loads as a model file, with the card that file records: a
    .safetensors model file, or a reference named again with its file (`mynet.py:build --weights F`)."""
    from edgecnn.zoo.external import kind_of

    return str(source).endswith(".safetensors") or bool(
        kind_of(source) and str(weights).endswith(".safetensors")
    )


def _names_its_builder(source: str, weights) -> bool:
    """Whether `weights` is a model file made from the builder `source` references (`mynet.py:build
    --weights mynet.trained.safetensors`): then it loads as that model file."""
    from edgecnn.zoo.external import canonical, kind_of

    if kind_of(source) != BUILDER or not str(weights).endswith(".safetensors") or not Path(weights).is_file():
        return False
    if not _is_model_file(weights):
        return False
    recipe = read_recipe(weights)
    if recipe.get("builder") != canonical(source):
        raise BadArgumentError(
            f"{weights} was built by {recipe.get('builder') or recipe['model']}, not {canonical(source)}"
        )
    return True


def _is_model_file(path) -> bool:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return "edgecnn" in (f.metadata() or {})
    except Exception:  # unreadable: load_model_file names the problem
        return True
