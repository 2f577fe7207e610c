"""Converted models on disk: one safetensors file whose header holds the recipe that rebuilds it.

The recipe names the zoo model, its build options and every transform with its per-layer ranks.
Reloading rebuilds the zoo model, replays the recipe's structure and loads the tensors: no pickle,
no arbitrary code. `load_source` is the one way every command turns "a zoo name or a converted
file" into a model.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgecnn.artifacts import atomic_output, sha256_file
from edgecnn.errors import BadArgumentError, UnknownNameError, WeightsError
from edgecnn.lazy import import_string

FORMAT = "edgecnn-model/1"
LEGACY_FORMATS = ("edgecnn-converted/1",)  # read as well: the same recipe, before trained files had it
# What a model made from another (converted, distilled, compressed) inherits from its source's header.
INHERITED = ("class_names", "data", "mean", "std")
# Transform name -> structural replay, imported only when a converted model is loaded.
_REPLAY = {
    "fold_bn": "edgecnn.transforms.fold_bn:replay",
    "separable": "edgecnn.transforms.separable:replay",
    "bottleneck": "edgecnn.transforms.bottleneck:replay",
    "lowrank": "edgecnn.transforms.lowrank:replay",
}


def model_recipe(loaded, input_size, transforms=(), **extra) -> dict:
    """The header of a model file: what rebuilds it (zoo name, build options, every transform with
    its ranks) and what describes it (classes, input size, mean/std, where its data and test split
    came from), so that no later command needs --num-classes, --input-size or --data repeated."""
    from dataclasses import asdict

    previous = loaded.recipe or {}
    recipe = {
        "format": FORMAT,
        "model": loaded.spec.name,
        "num_classes": loaded.num_classes,
        "in_chans": loaded.in_chans,
        "model_kwargs": loaded.model_kwargs,
        "input_size": [int(v) for v in input_size],
        "base_weights": previous.get("base_weights") or asdict(loaded.weights),
        "transforms": list(previous.get("transforms", [])) + list(transforms),
    }
    recipe.update({k: previous[k] for k in INHERITED if k in previous})
    recipe.update({k: v for k, v in extra.items() if v is not None})
    return recipe


def input_size_of(loaded, given=None) -> tuple[int, int]:
    """--input-size if given, else the one the model file records, else the zoo default."""
    return tuple(given or (loaded.recipe or {}).get("input_size") or loaded.spec.input_size)


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

    if recipe.get("model") not in list_models():
        bad("model", f"must name a zoo model, got {recipe.get('model')!r}")
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
        for name, value in layers.items():
            ranks = value if isinstance(value, list) else [value]
            if not ranks or not all(type(r) is int and r >= 1 for r in ranks):
                bad(f"{where}.layers.{name}", f"must be a positive integer rank, got {value!r}")
    return recipe


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
    if recipe.get("data") is not None:
        from edgecnn.data.splits import recorded_split

        try:
            recorded_split(recipe)
        except (ValueError, TypeError) as e:
            bad("data", str(e))


def load_converted(path: str | Path):
    """Rebuild a model from its file: zoo build, structural replay (none for a trained model), then
    the tensors."""
    from edgecnn.zoo import load_model
    from edgecnn.zoo.weights import WeightsInfo, apply_state_dict, read_state_dict

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"model file not found: {path}")
    recipe = read_recipe(path)
    # Shapes only: every tensor comes from the file, so nothing is initialised twice.
    try:
        loaded = load_model(
            recipe["model"],
            num_classes=recipe["num_classes"],
            in_chans=recipe["in_chans"],
            device="meta",
            **recipe.get("model_kwargs", {}),
        )
    except (UnknownNameError, BadArgumentError, TypeError) as e:
        raise WeightsError(f"{path}: its recipe does not build a model ({e})") from None
    model = loaded.model
    for i, step in enumerate(recipe["transforms"]):
        try:
            import_string(_REPLAY[step["name"]])(model, step)
        except (AttributeError, KeyError, TypeError, ValueError, IndexError) as e:
            raise WeightsError(
                f"{path}: recipe step transforms[{i}] ({step['name']}) does not fit {recipe['model']} "
                f"({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})"
            ) from None
    model = model.to_empty(device="cpu")
    hint = "its header does not describe its tensors: the file was altered"
    apply_state_dict(model, read_state_dict(path), spec=loaded.spec, origin=str(path), hint=hint)
    loaded.model = model.eval()
    loaded.weights = WeightsInfo(
        "converted" if recipe["transforms"] else "file",
        str(path.resolve()),
        sha256_file(path),
        ", ".join(s["name"] for s in recipe["transforms"]) or None,
    )
    loaded.recipe = recipe
    return loaded


def load_source(source: str, weights=None, num_classes=None, in_chans=None, model_kwargs=None):
    """A zoo name (with optional weights) or a model file (.safetensors written by train, convert,
    distill or compress), as a LoadedModel."""
    from edgecnn.zoo import load_model

    if str(source).endswith(".safetensors"):
        if weights is not None:
            raise BadArgumentError("--weights goes with a zoo model name, not a model file")
        if Path(source).is_file() and not _is_model_file(source):
            raise BadArgumentError(
                f"{source} holds plain weights, not an edgecnn model file: use MODEL --weights {source}"
            )
        loaded = load_converted(source)
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
    if Path(source).suffix in (".pt", ".pth", ".onnx"):
        raise BadArgumentError(
            f"{source}: give a zoo model name or a .safetensors model file written by edgecnn; "
            "for a zoo model with your weights use MODEL --weights FILE"
        )
    kwargs = model_kwargs or {}
    return load_model(source, weights=weights, num_classes=num_classes, in_chans=in_chans, **kwargs)


def _is_model_file(path) -> bool:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return "edgecnn" in (f.metadata() or {})
    except Exception:  # unreadable: load_converted names the problem
        return True
