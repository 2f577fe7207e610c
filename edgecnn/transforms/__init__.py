"""Pure model transforms: fold BN, separable and bottleneck swaps from trained weights, and `convert`.

Each is `(model, options) -> (new_model, report)` and never mutates its input.
"""

from edgecnn.transforms.base import LayerChange, SwapOptions, TransformReport
from edgecnn.transforms.bottleneck import bottleneck
from edgecnn.transforms.fold_bn import fold_bn
from edgecnn.transforms.pipeline import ConvertResult, convert, load_converted, save_converted
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
    "save_converted",
    "separable",
]
