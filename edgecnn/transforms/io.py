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
from edgecnn.errors import BadArgumentError, WeightsError
from edgecnn.lazy import import_string

FORMAT = "edgecnn-converted/1"
# Transform name -> structural replay, imported only when a converted model is loaded.
_REPLAY = {
    "fold_bn": "edgecnn.transforms.fold_bn:replay",
    "separable": "edgecnn.transforms.separable:replay",
    "bottleneck": "edgecnn.transforms.bottleneck:replay",
    "lowrank": "edgecnn.transforms.lowrank:replay",
}


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
    if meta.get("format") != FORMAT or "edgecnn" not in meta:
        raise WeightsError(f"{path} is not an edgecnn converted model (no '{FORMAT}' recipe in its header)")
    return json.loads(meta["edgecnn"])


def load_converted(path: str | Path):
    """Rebuild a converted model from its file: zoo build, structural replay, then the tensors."""
    from edgecnn.zoo import load_model
    from edgecnn.zoo.weights import WeightsInfo, apply_state_dict, read_state_dict

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"converted model not found: {path}")
    recipe = read_recipe(path)
    # Shapes only: every tensor comes from the file, so nothing is initialised twice.
    loaded = load_model(
        recipe["model"],
        num_classes=recipe["num_classes"],
        in_chans=recipe["in_chans"],
        device="meta",
        **recipe.get("model_kwargs", {}),
    )
    model = loaded.model
    for step in recipe["transforms"]:
        if step["name"] not in _REPLAY:
            raise WeightsError(f"{path} uses transform '{step['name']}', unknown to this edgecnn version")
        import_string(_REPLAY[step["name"]])(model, step)
    model = model.to_empty(device="cpu")
    apply_state_dict(model, read_state_dict(path), spec=loaded.spec, origin=str(path))
    loaded.model = model.eval()
    loaded.weights = WeightsInfo(
        "converted",
        str(path.resolve()),
        sha256_file(path),
        ", ".join(s["name"] for s in recipe["transforms"]),
    )
    loaded.recipe = recipe
    return loaded


def load_source(source: str, weights=None, num_classes=None, in_chans=None, model_kwargs=None):
    """A zoo name (with optional weights) or a converted .safetensors, as a LoadedModel."""
    from edgecnn.zoo import load_model

    if str(source).endswith(".safetensors"):
        if weights is not None:
            raise BadArgumentError("--weights goes with a zoo model name, not a converted file")
        return load_converted(source)
    if Path(source).suffix in (".pt", ".pth", ".onnx"):
        raise BadArgumentError(
            f"{source}: give a zoo model name or a .safetensors file written by `edgecnn convert`; "
            "for a zoo model with your weights use MODEL --weights FILE"
        )
    kwargs = model_kwargs or {}
    return load_model(source, weights=weights, num_classes=num_classes, in_chans=in_chans, **kwargs)
