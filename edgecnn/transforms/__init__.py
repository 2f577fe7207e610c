"""Pure model transforms: fold BN, separable / bottleneck / low-rank swaps from trained weights, `convert`.

Each is `(model, options) -> (new_model, report)` and never mutates its input.
"""

from edgecnn.transforms.base import LayerChange, SwapOptions, TransformReport
from edgecnn.transforms.bottleneck import bottleneck
from edgecnn.transforms.fold_bn import fold_bn
from edgecnn.transforms.io import load_converted, load_source, read_recipe, save_converted, save_with_recipe
from edgecnn.transforms.lowrank import lowrank
from edgecnn.transforms.pipeline import ConvertResult, convert
from edgecnn.transforms.separable import separable

__all__ = [
    "ConvertResult",
    "LayerChange",
    "SwapOptions",
    "TransformReport",
    "bottleneck",
    "convert",
    "fold_bn",
    "load_converted",
    "load_source",
    "lowrank",
    "read_recipe",
    "save_converted",
    "save_with_recipe",
    "separable",
]
