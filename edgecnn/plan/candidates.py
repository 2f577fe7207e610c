"""Per-layer candidates: keep the layer, or one of the swaps at a rank from a small grid.

Every candidate is built from the layer's trained weights (the converter's own SVD / Tucker-2
decompositions, one layer at a time) and carries its replacement block, so the latency table can run
it alone and the error score can run it on the layer's real inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgecnn.errors import BadArgumentError, UnknownNameError

# What a plan may choose per layer or group (`--candidates`): channel pruning and the three swaps
CANDIDATES = ("prune", "separable", "bottleneck", "lowrank")


@dataclass(frozen=True)
class Grid:
    """The ranks tried per layer, and the kinds of candidate. Ranks and kept channel counts are
    rounded to multiples of `multiple_of` where possible."""

    separable: tuple[int, ...] = (1, 2, 3, 4)  # channel multiplier T
    bottleneck: tuple[float, ...] = (0.125, 0.25, 0.375, 0.5, 0.75)  # R1/C and R2/N
    lowrank: tuple[float, ...] = (0.125, 0.25, 0.375, 0.5)  # r / min(C, N)
    prune: tuple[float, ...] = (0.25, 0.375, 0.5, 0.625, 0.75)  # fraction of a group's channels kept
    multiple_of: int = 8
    kinds: tuple[str, ...] = CANDIDATES

    def with_candidates(self, names) -> Grid:
        """Only the candidate kinds `names` (a comma-separated string or a sequence); an unknown one
        is a one-line error naming the valid ones."""
        import dataclasses

        given = names.split(",") if isinstance(names, str) else list(names)
        kinds = tuple(dict.fromkeys(n.strip() for n in given if n.strip()))
        for kind in kinds:
            if kind not in CANDIDATES:
                raise UnknownNameError("--candidates kind", kind, CANDIDATES)
        if not kinds:
            raise BadArgumentError(f"--candidates needs at least one of {', '.join(CANDIDATES)}")
        return dataclasses.replace(self, kinds=kinds)

    @classmethod
    def parse(cls, specs) -> Grid:
        """`--grid KIND=V1,V2,...` (repeatable): the ranks tried for KIND replace the default ones,
        e.g. "bottleneck=0.0625,0.125,0.25" or "multiple_of=16"; a bad one is a one-line error."""
        import dataclasses

        grid = {}
        for spec in specs:
            kind, sep, values = str(spec).partition("=")
            if kind not in KINDS:
                raise UnknownNameError("--grid kind", kind, KINDS)
            try:
                parsed = tuple(KINDS[kind][0](v) for v in values.split(",")) if sep and values else ()
            except ValueError:
                parsed = ()
            if not parsed or not all(KINDS[kind][1](v) for v in parsed):
                raise BadArgumentError(
                    f"--grid {spec}: {kind} takes {KINDS[kind][2]}, e.g. {kind}={KINDS[kind][3]}"
                )
            grid[kind] = parsed[0] if kind == "multiple_of" else tuple(sorted(set(parsed)))
        return dataclasses.replace(cls(), **grid)

    def options(self, kind: str):
        """SwapOptions for each grid point of `kind`; a candidate must save MACs to be tried."""
        from edgecnn.transforms import SwapOptions

        if kind == "separable":
            return [SwapOptions(rank=t, min_mac_saving=None).validate(kind) for t in self.separable]
        ratios = getattr(self, kind)
        return [
            SwapOptions(rank_ratio=r, multiple_of=self.multiple_of, min_mac_saving=None).validate(kind)
            for r in ratios
        ]


# --grid kind -> (type, valid value, what it takes, an example)
KINDS = {
    "separable": (int, lambda v: v >= 1, "channel multipliers T >= 1", "1,2,4"),
    "bottleneck": (float, lambda v: 0 < v <= 1, "rank ratios in (0, 1]", "0.0625,0.125,0.25"),
    "lowrank": (float, lambda v: 0 < v < 1, "rank ratios in (0, 1)", "0.0625,0.125,0.25"),
    "prune": (float, lambda v: 0 < v < 1, "fractions of channels kept, in (0, 1)", "0.25,0.5,0.75"),
    "multiple_of": (int, lambda v: v >= 1, "one positive integer", "8"),
}


@dataclass
class Candidate:
    kind: str  # "keep" or a swap kind (separable, bottleneck, lowrank)
    value: object  # the recipe value that rebuilds it (T, [R1, R2], r); None for keep
    macs: int
    params: int
    weight_error: float
    block: object = field(repr=False)  # the replacement nn.Module (the layer itself for keep)
    latency_ms: float | None = None
    error: float | None = None  # relative error of the layer's output on calibration images
    precision: str = "fp32"  # what the runtime computes it in (int8: Q/DQ in the plan's scheme)
    # A composite slot's candidate: the modules it puts in place, by name (a pruned group's cut
    # layers, or a mix's swapped convs); None: `block` replaces the slot's own layer
    parts: dict | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        from edgecnn.runtime import is_baseline

        tag = "" if is_baseline(self.precision) else f" {self.precision}"
        if self.kind == "prune":  # root -> kept channel indices
            return "prune " + "/".join(str(len(kept)) for kept in self.value.values()) + tag
        if self.kind == "mix":  # conv -> its own candidate
            return ", ".join(f"{n.rsplit('.', 1)[-1]} {c.label}" for n, c in self.value.items())
        if self.value is None:
            return self.kind + tag
        ranks = self.value if isinstance(self.value, list | tuple) else [self.value]
        return f"{self.kind} {'/'.join(str(int(r)) for r in ranks)}{tag}"

    def in_precision(self, precision: str) -> Candidate:
        """The same structure computed in `precision` (same block; latency and error to measure)."""
        import dataclasses

        return dataclasses.replace(self, precision=precision, latency_ms=None, error=None)


@dataclass
class Slot:
    """One layer the planner may replace, with everything it could become."""

    name: str
    layer: object = field(repr=False)
    in_shape: tuple[int, ...]  # one sample's input shape: (C, H, W) or (C,)
    candidates: list[Candidate] = field(default_factory=list)  # [0] is keep
    members: tuple[str, ...] = ()  # a composite slot's convs (its name joins them), else empty
    own: dict = field(default_factory=dict, repr=False)  # a composite's swappable convs: name -> Slot

    @property
    def layers(self) -> tuple[str, ...]:
        """The model's layers this slot's candidates change."""
        return self.members or (self.name,)

    def parts(self, cand: Candidate) -> dict:
        """What `cand` puts in place in the model, by layer name (nothing for keep)."""
        if cand.parts is not None:
            return cand.parts
        return {} if cand.kind == "keep" else {self.name: cand.block}

    @property
    def keep(self) -> Candidate:
        return self.candidates[0]

    def in_precision(self, precision: str) -> list[Candidate]:
        """The candidates computed in `precision`, in structure order (probe k takes the k-th)."""
        return [c for c in self.candidates if c.precision == precision]


def _input_shapes(model, example, names) -> dict[str, tuple[int, ...]]:
    from edgecnn.transforms.base import run_with_hooks

    shapes: dict[str, tuple[int, ...]] = {}
    modules = dict(model.named_modules())

    def hook(name):
        def fn(module, args, out):
            shapes.setdefault(name, tuple(args[0].shape[1:]))

        return fn

    run_with_hooks(model, example, {modules[n]: hook(n) for n in names})
    return shapes


def enumerate_slots(
    model, example, grid: Grid | None = None, *, include=(), exclude=(), required: bool = True
) -> list[Slot]:
    """A Slot for every layer some swap of the grid's kinds can take (KxK convs, 1x1 convs, Linear),
    in model order; none is an error where `required`."""
    import copy

    from edgecnn.transforms import SWAPS, SwapOptions
    from edgecnn.transforms.base import conv_geometry, selected

    grid = grid or Grid()
    select = SwapOptions(include=tuple(include), exclude=tuple(exclude))
    sizes = conv_geometry(model, example)
    eligible = [
        (name, module, [s for s in SWAPS.values() if s.kind in grid.kinds and s.eligible(module) is None])
        for name, module in model.named_modules()
        if name in sizes and selected(name, select)
    ]
    eligible = [(n, m, swaps) for n, m, swaps in eligible if swaps]
    shapes = _input_shapes(model, example, [n for n, _, _ in eligible])
    slots = []
    for name, module, swaps in eligible:
        in_hw, out_hw = sizes[name]
        weight = module.weight
        macs = out_hw * weight.numel()
        params = sum(p.numel() for p in module.parameters())
        slot = Slot(
            name, module, shapes[name], [Candidate("keep", None, macs, params, 0.0, copy.deepcopy(module))]
        )
        seen = set()
        for swap in swaps:
            for options in grid.options(swap.kind):
                change, value, block = swap.layer(name, module, options, in_hw, out_hw)
                key = (swap.kind, str(value))
                if change.macs_after >= macs or key in seen:
                    continue
                seen.add(key)
                slot.candidates.append(
                    Candidate(
                        swap.kind, value, change.macs_after, change.params_after, change.weight_error, block
                    )
                )
        if len(slot.candidates) > 1:
            slots.append(slot)
    if not slots and required:
        where = " among the selected layers" if include or exclude else ""
        raise BadArgumentError(
            f"no layer of the model can be swapped{where}: {', '.join(SWAPS)} need KxK or 1x1 convs "
            "or Linear layers that a rank from the grid makes cheaper"
        )
    return slots
