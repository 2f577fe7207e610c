"""`import_string("module:attr")`: how tables name code that must not be imported until it runs.

The zoo's builders, the runtime backends, the converter's replays and the export steps are all named
this way, so `edgecnn --help` and the tables themselves never import torch or a runtime.
"""

from __future__ import annotations

import importlib


def import_string(ref: str):
    """The attribute `attr` of module `module` for a reference "module:attr" (dotted attrs allowed)."""
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"expected 'module:attr', got {ref!r}")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
