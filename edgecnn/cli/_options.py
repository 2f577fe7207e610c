"""Options shared by several commands: one definition, one help text."""

from __future__ import annotations

from typing import Annotated

import typer

MODEL_HELP = "Zoo name (`edgecnn zoo`), timm:NAME, file.py:function, or a model file edgecnn wrote."
Source = Annotated[str, typer.Argument(help=MODEL_HELP, metavar="MODEL")]


def _size(value: str | None) -> tuple[int, int] | None:
    """--input-size N (square) or H,W (also HxW) as (H, W): one token, so it never takes the next option."""
    if value is None:
        return None
    try:
        dims = tuple(int(p) for p in value.lower().replace("x", ",").split(","))
    except ValueError:
        dims = ()
    if len(dims) not in (1, 2) or min(dims) < 1:
        raise typer.BadParameter(f"{value!r}: give N for N x N, or H,W (e.g. 64 or 64,48)")
    return (dims[0], dims[-1])


def _trust(value: bool) -> bool:
    if value:
        from edgecnn.zoo.external import set_trust

        set_trust(True)
    return value


TrustCode = Annotated[
    bool,
    typer.Option(
        "--trust-code",
        callback=_trust,
        help="Let model files made from your Python builder (file.py:function) import it.",
    ),
]
Weights = Annotated[str | None, typer.Option(help="'imagenet' or a .pth/.safetensors file.")]
Separable = Annotated[bool, typer.Option("--separable", help="Depthwise + pointwise swap (SVD).")]
Bottleneck = Annotated[bool, typer.Option("--bottleneck", help="1x1-KxK-1x1 swap (Tucker-2).")]
Lowrank = Annotated[bool, typer.Option("--lowrank", help="1x1 convs and Linear layers split C->r->N (SVD).")]
Prune = Annotated[
    float | None,
    typer.Option(
        help="Remove this fraction of every coupled channel group (the weakest by L2 norm; counts kept at "
        "multiples of 8), as Torch-Pruning's uniform pruning_ratio."
    ),
]
Rank = Annotated[int | None, typer.Option(help="Separable channel multiplier T for every layer.")]
RankRatio = Annotated[
    float | None,
    typer.Option(help="Bottleneck ranks as a fraction of C and N; low-rank r as a fraction of min(C, N)."),
]
Energy = Annotated[
    float | None, typer.Option(help="Per-layer rank keeping this fraction of spectral energy (default 0.9).")
]
Include = Annotated[
    list[str] | None, typer.Option(metavar="GLOB", help="Only layers matching this glob (repeatable).")
]
Exclude = Annotated[
    list[str] | None, typer.Option(metavar="GLOB", help="Skip layers matching this glob (repeatable).")
]
MinMacSaving = Annotated[float, typer.Option(help="Skip a layer saving no more than this MAC fraction.")]
MaxError = Annotated[
    float | None, typer.Option(help="Skip a layer whose relative weight error exceeds this.")
]
NumClasses = Annotated[int | None, typer.Option(help="Classifier outputs (default: the model's).")]
InChans = Annotated[int | None, typer.Option(help="Input channels (default: the model's).")]
ModelArg = Annotated[
    list[str] | None,
    typer.Option("--model-arg", "-a", metavar="KEY=VALUE", help="Builder argument (repeatable)."),
]
# str on the command line, (H, W) by the time a command sees it (the callback converts it)
InputSize = Annotated[
    str | None,
    typer.Option(callback=_size, metavar="N|H,W", help="Input size, N for N x N (default: the model's)."),
]
Mean = Annotated[
    str | None,
    typer.Option(help="An ONNX/IR file's normalisation (it records none): per-channel mean on 0..1 pixels."),
]
Std = Annotated[str | None, typer.Option(help="With --mean: per-channel std on 0..1 pixels.")]
Force = Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


# the flags swap_options takes, as every command that converts names its parameters
SWAP_FLAGS = ("separable", "bottleneck", "lowrank", "rank", "rank_ratio", "energy", "include", "exclude")
SWAP_FLAGS += ("min_mac_saving", "max_error")


def swap_options_of(params: dict):
    """`swap_options` from a command's parameters, by name (convert's and export's flags are one set)."""
    return swap_options(**{k: params[k] for k in SWAP_FLAGS})


def swap_options(
    *,
    separable,
    bottleneck,
    lowrank=False,
    rank,
    rank_ratio,
    energy,
    include,
    exclude,
    min_mac_saving,
    max_error,
):
    """Validated SwapOptions (or None) for each swap the flags ask for: separable, bottleneck, lowrank."""
    from edgecnn.errors import BadArgumentError
    from edgecnn.transforms import SwapOptions

    if (rank is not None and not separable) or (rank_ratio is not None and not (bottleneck or lowrank)):
        raise BadArgumentError("--rank goes with --separable and --rank-ratio with --bottleneck or --lowrank")
    common = dict(
        energy=energy,
        include=tuple(include or ()),
        exclude=tuple(exclude or ()),
        min_mac_saving=min_mac_saving,
        max_error=max_error,
    )
    sep = SwapOptions(rank=rank, **common).validate("separable") if separable else None
    bot = SwapOptions(rank_ratio=rank_ratio, **common).validate("bottleneck") if bottleneck else None
    low = SwapOptions(rank_ratio=rank_ratio, **common).validate("lowrank") if lowrank else None
    return sep, bot, low
