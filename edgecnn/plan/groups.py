"""Channel pruning in the plan: coupled channels inside a block become one choice.

A group (a conv's output channels and the convs that read them: Torch-Pruning's dependency graph)
is pruned as a whole, so its convs cannot also be swapped one by one. Each group, merged with those
it shares a conv with, becomes a composite slot whose candidates are the groups pruned at each keep
ratio (timed in probes of their own, in context, and scored at the composite's last conv on the
calibration images) and every mix of its convs' own candidates (their times and errors summed, each
measured as for any layer). A group that reaches more than MAX_CONVS convs (a residual stream, a
dense block's concatenations) or a Linear layer is left to the swaps.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
from dataclasses import dataclass, field

import numpy as np

from edgecnn.plan.candidates import Candidate, Slot

log = logging.getLogger(__name__)

MAX_CONVS = 3  # a group reaching more convs than this crosses blocks (a composite: one more at most)
MAX_MIXES = 2000  # mixes of a composite's convs' candidates kept (the Pareto-best of each conv first)
SEP = "+"  # a composite's name: its convs joined


@dataclass
class Composite:
    """Coupled groups inside one block: their roots, channel counts and the convs a cut changes."""

    roots: list[str]
    channels: dict[str, int]  # root -> channels
    convs: list[str]  # model order
    layers: set[str] = field(default_factory=set)  # every layer a cut changes (convs and BNs)
    prunes: list[Candidate] = field(default_factory=list)  # one per distinct keep count
    base_ms: dict[str, float] = field(default_factory=dict)  # each conv's time in context, unpruned
    base: dict[str, tuple[int, int]] = field(default_factory=dict)  # each conv's (MACs, params)

    @property
    def name(self) -> str:
        return SEP.join(self.convs)


def find_composites(model, example, keep_ratios, multiple_of: int = 8) -> list[Composite]:
    """The prunable groups of `model` (eval, BN folded) inside blocks, merged where they share a conv,
    each with a prune candidate per keep ratio (counts rounded to multiples of `multiple_of`)."""
    from torch import nn

    from edgecnn.transforms.base import conv_geometry
    from edgecnn.transforms.prune import prune_groups

    modules = dict(model.named_modules())
    found: list[Composite] = []

    def convs_of(group) -> set[str]:
        return {n for n, _ in group.members if isinstance(modules[n], nn.Conv2d)}

    # the smallest groups first: a block's own groups merge before a group that reaches into it
    for group in sorted(prune_groups(model, example), key=lambda g: len(convs_of(g))):
        layers, convs = {n for n, _ in group.members}, convs_of(group)
        if group.why_not or len(convs) > MAX_CONVS or any(isinstance(modules[n], nn.Linear) for n in layers):
            continue
        merged = [c for c in found if convs & set(c.convs)]
        if len(convs.union(*(c.convs for c in merged))) > MAX_CONVS + 1:
            continue  # it would join blocks into one choice
        comp = Composite([group.root], {group.root: group.channels}, sorted(convs), layers=set(layers))
        for c in merged:
            comp.roots += c.roots
            comp.channels.update(c.channels)
            comp.convs = sorted(set(comp.convs) | set(c.convs))
            comp.layers |= c.layers
        found = [c for c in found if c not in merged] + [comp]
    order = {n: i for i, (n, _) in enumerate(model.named_modules())}
    found.sort(key=lambda c: min(map(order.get, c.convs)))
    sizes = conv_geometry(model, example)
    for comp in found:
        comp.convs.sort(key=order.__getitem__)
        comp.base = {
            n: (sizes[n][1] * modules[n].weight.numel(), sum(p.numel() for p in modules[n].parameters()))
            for n in comp.convs
        }
    _prune_candidates(model, example, found, keep_ratios, multiple_of, sizes)
    return [c for c in found if c.prunes]


def _prune_candidates(model, example, comps, keep_ratios, multiple_of, sizes) -> None:
    """Per composite, one candidate per distinct keep count: its layers cut to the kept channels (the
    strongest by group L2 norm of the folded weights; `value`: root -> kept channel indices). One cut
    of every composite per ratio: each group's channels are ranked on the unpruned graph."""
    from edgecnn.transforms.prune import keep_count, prune

    modules = dict(model.named_modules())
    seen: dict[int, set] = {id(c): set() for c in comps}
    for ratio in keep_ratios:
        keep = {r: keep_count(n, ratio, multiple_of) for c in comps for r, n in c.channels.items()}
        pruned, report = prune(model, keep, example)
        cut, kept = dict(pruned.named_modules()), report.recipe["layers"]
        for comp in comps:
            counts = tuple(keep[r] for r in comp.roots)
            if counts in seen[id(comp)] or all(keep[r] == comp.channels[r] for r in comp.roots):
                continue
            seen[id(comp)].add(counts)
            parts = {n: cut[n] for n in comp.layers if n in kept}
            after = {n: parts.get(n, modules[n]) for n in comp.convs}
            comp.prunes.append(
                Candidate(
                    "prune",
                    {r: kept[r].get("out", kept[r].get("in")) for r in comp.roots},  # depthwise: either
                    sum(sizes[n][1] * after[n].weight.numel() for n in comp.convs),
                    sum(p.numel() for m in after.values() for p in m.parameters()),
                    0.0,
                    None,
                    parts=parts,
                )
            )


def tagged(slots: list[Slot], comps: list[Composite]) -> list[str]:
    """The layers every probe of a plan with composites tags: the slots and the composites' convs (the
    same set everywhere, so a node is counted in the same layer in every probe)."""
    return list(dict.fromkeys([*(s.name for s in slots), *(n for c in comps for n in c.convs)]))


def time_prunes(
    model, comps: list[Composite], names: list[str], input_shape, table, *, timed=(), on_probe=None
) -> None:
    """Each composite's convs timed in context at each keep count (probe k cuts every composite to its
    k-th) and, where a conv is not among `timed` (the slots the swap probes time), unpruned (probe 0),
    by the runtime's profiler, tagging `names`; cached in `table`."""
    from edgecnn.plan.context import ProbeTimes, names_tag, profile_probe

    tag = names_tag(names)
    count = 1 + max(len(c.prunes) for c in comps)
    first = 0 if any(n not in timed for c in comps for n in c.convs) else 1
    for k in range(first, count):
        if on_probe:
            on_probe(k + 1 - first, count - first)
        probe = copy.deepcopy(model)
        for comp in comps:
            if 0 < k <= len(comp.prunes):
                for name, part in comp.prunes[k - 1].parts.items():
                    probe.set_submodule(name, copy.deepcopy(part))
        probe.eval()
        key = table.key(probe, input_shape) + f":in-context:prune-{tag}"
        entry = table.get(key)
        if entry is None:
            measure = lambda probe=probe: profile_probe(  # noqa: E731
                probe, names, input_shape, table.backend, **table.setting
            ).to_entry()
            entry = table.measured(key, measure)
        times = ProbeTimes.from_entry(entry).layers
        for comp in comps:
            if k == 0:
                comp.base_ms = {n: times[n] for n in comp.convs}
            elif k <= len(comp.prunes):
                comp.prunes[k - 1].latency_ms = sum(times[n] for n in comp.convs)


def score_prunes(model, comps: list[Composite], batches) -> None:
    """Each prune candidate's relative L2 error at its composite's last conv, on the calibration
    images, with only that composite cut (as a swap is scored at its own layer)."""
    import torch

    from edgecnn.analysis import hooked

    def outputs(net, names) -> dict[str, list]:
        got: dict[str, list] = {n: [] for n in names}

        def keep(name):
            def fn(module, args, out) -> None:
                got[name].append(out.double())

            return fn

        with hooked(net, forward={n: keep(n) for n in names}), torch.no_grad():
            for x in batches:
                net(torch.from_numpy(np.ascontiguousarray(x)))
        return got

    model.eval()
    references = outputs(model, {c.convs[-1] for c in comps})  # one pass for every composite
    for comp in comps:
        last = comp.convs[-1]
        reference = references[last]
        norm = sum(float(r.pow(2).sum()) for r in reference)
        for cand in comp.prunes:
            probe = copy.deepcopy(model)
            for name, part in cand.parts.items():
                probe.set_submodule(name, copy.deepcopy(part))
            got = outputs(probe.eval(), [last])[last]
            sq = sum(float((g - r).pow(2).sum()) for g, r in zip(got, reference, strict=True))
            cand.error = math.sqrt(sq / norm) if norm > 0 else 0.0


def compose(slots: list[Slot], comps: list[Composite]) -> list[Slot]:
    """The choice's slots: each composite as one slot (its prune candidates and every mix of its
    convs' own candidates, `mix` holding them), the other slots as they are, in model order."""
    by_name = {s.name: s for s in slots}
    taken = {n for c in comps for n in c.convs}
    units = {s.name: s for s in slots if s.name not in taken}
    for comp in comps:
        own = [by_name.get(n) for n in comp.convs]
        choices = [_pareto(s.candidates) if s else [None] for s in own]
        while math.prod(len(c) for c in choices) > MAX_MIXES:  # thin the longest list
            longest = max(choices, key=len)
            del longest[len(longest) // 2]
        mixes = [_mix(comp, own, picks) for picks in itertools.product(*choices)]
        mixes.sort(key=lambda c: c.kind != "keep")  # [0] keeps every conv
        shape = own[0].in_shape if own[0] else ()
        mine = {n: s for n, s in zip(comp.convs, own, strict=True) if s is not None}
        units[comp.convs[0]] = Slot(comp.name, None, shape, [*mixes, *comp.prunes], tuple(comp.convs), mine)
    order = [s.name for s in slots] + [c.convs[0] for c in comps]
    return sorted(units.values(), key=lambda u: order.index(u.members[0] if u.members else u.name))


def _pareto(cands: list[Candidate]) -> list[Candidate]:
    """The candidates no other is both faster than and no worse in error than (keep always)."""

    def beaten(c) -> bool:
        return any(
            o is not c
            and o.latency_ms <= c.latency_ms
            and o.error <= c.error
            and o.latency_ms + o.error < c.latency_ms + c.error
            for o in cands
        )

    return [cands[0], *(c for c in cands[1:] if not beaten(c))]


def _mix(comp: Composite, own, picks) -> Candidate:
    """One mix: each conv of `comp` as its pick (None: a conv no swap takes, kept)."""
    pairs = list(zip(comp.convs, picks, strict=True))
    chosen = [(n, c) for n, c in pairs if c is not None]
    fixed = [n for n, c in pairs if c is None]
    swapped = {n: c for n, c in chosen if c.kind != "keep"}
    return Candidate(
        "mix" if swapped else "keep",
        swapped or None,
        sum(c.macs for _, c in chosen) + sum(comp.base[n][0] for n in fixed),
        sum(c.params for _, c in chosen) + sum(comp.base[n][1] for n in fixed),
        max((c.weight_error for _, c in chosen), default=0.0),
        None,
        latency_ms=sum(c.latency_ms for _, c in chosen) + sum(comp.base_ms[n] for n in fixed),
        error=sum(c.error for _, c in chosen),
        parts={n: c.block for n, c in swapped.items()},
    )
