"""The model zoo: a registry of classic CNNs, built by name with safe weight loading."""

from edgecnn.zoo.external import list_timm, trusting
from edgecnn.zoo.factory import create_model, load_model
from edgecnn.zoo.registry import (
    ModelSpec,
    card_for,
    check_input_size,
    get_spec,
    list_models,
    list_specs,
    register,
)

__all__ = [
    "ModelSpec",
    "card_for",
    "check_input_size",
    "create_model",
    "get_spec",
    "list_models",
    "list_specs",
    "list_timm",
    "load_model",
    "register",
    "trusting",
]
