"""Zoo models whose builder is another listed model's with more or wider blocks of the same kind.

Per-model tests of the transforms and of the classifier-head swap meet nothing in them that the
smaller one lacks (together they took ~45 s of the suite); every model still builds and runs
forward in test_zoo_build.py.
"""

SAME_BLOCKS_AS = {
    **{f"vgg{d}{bn}": f"vgg11{bn}" for d in (13, 16, 19) for bn in ("", "_bn")},
    "resnet34": "resnet18",  # BasicBlock
    "resnet101": "resnet50",  # Bottleneck
    "resnet152": "resnet50",
    "wide_resnet50_2": "resnet50",  # Bottleneck, twice as wide inside
}


def representatives(names) -> list[str]:
    """`names` without those whose blocks another listed model has."""
    return [n for n in names if n not in SAME_BLOCKS_AS]
