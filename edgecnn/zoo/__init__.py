"""The model zoo: a registry of classic CNNs, built by name with safe weight loading."""

from edgecnn.zoo.factory import LoadedModel, create_model, load_model
from edgecnn.zoo.registry import ModelSpec, check_input_size, get_spec, list_models, register

__all__ = [
    "LoadedModel",
    "ModelSpec",
    "check_input_size",
    "create_model",
    "get_spec",
    "list_models",
    "load_model",
    "register",
]
