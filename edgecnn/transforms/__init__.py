"""Pure model transforms: fold BN, separable / bottleneck / low-rank swaps from trained weights, `convert`.

Each is `(model, options) -> (new_model, report)` and never mutates its input.
"""

from edgecnn.transforms import bottleneck as _bottleneck_module
from edgecnn.transforms import lowrank as _lowrank_module
from edgecnn.transforms import separable as _separable_module
from edgecnn.transforms.base import LayerChange, Swap, SwapOptions, TransformReport
from edgecnn.transforms.bottleneck import bottleneck
from edgecnn.transforms.convert import ConvertResult, convert, convert_exact
from edgecnn.transforms.fold_bn import fold_bn
from edgecnn.transforms.lowrank import lowrank
from edgecnn.transforms.model_file import (
    card_of,
    input_size_of,
    load_model_file,
    load_source,
    read_recipe,
    save_converted,
    save_with_recipe,
    saved_model,
)
from edgecnn.transforms.separable import separable

# Swap kind -> its Swap (plan, build, eligible layers): what a planner chooses among per layer.
SWAPS: dict[str, Swap] = {
    m.SWAP.kind: m.SWAP for m in (_separable_module, _bottleneck_module, _lowrank_module)
}

__all__ = [
    "SWAPS",
    "ConvertResult",
    "LayerChange",
    "Swap",
    "SwapOptions",
    "TransformReport",
    "bottleneck",
    "card_of",
    "convert",
    "convert_exact",
    "fold_bn",
    "input_size_of",
    "load_model_file",
    "load_source",
    "lowrank",
    "read_recipe",
    "save_converted",
    "save_with_recipe",
    "saved_model",
    "separable",
]
