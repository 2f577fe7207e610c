"""`compress`: a model made faster by a requested factor *on a given runtime*, measured there.

plan (latency table measured on the runtime + error scores on real images + knapsack) -> build the
student from the trained weights with BN kept -> re-estimate BN -> distill -> export for the runtime
(verified against PyTorch) -> time the original and the student in the same run, report predicted
vs measured latency and test top-1 before/after on the same test images.
"""

from edgecnn.compress.api import CompressResult, compress
from edgecnn.compress.int8 import quantize_with_accuracy_control
from edgecnn.compress.options import CompressOptions

__all__ = ["CompressOptions", "CompressResult", "compress", "quantize_with_accuracy_control"]
