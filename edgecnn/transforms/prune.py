"""Structured channel pruning of coupled groups, from the trained weights.

Torch-Pruning's dependency graph says which layers share a set of channels (a conv's outputs, the
BN after it, the convs that read them, through residual additions, concatenations and depthwise
convs); the kept channels are the group's strongest by L2 norm. The pruned model is then cut by
plain index selection, recorded per layer in the recipe, so a pruned file reloads by the same cuts
without Torch-Pruning. Dense convs with fewer channels run at full efficiency on every runtime.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

from edgecnn.errors import BadArgumentError
from edgecnn.transforms.base import TransformReport

log = logging.getLogger(__name__)

# Layers whose channels edgecnn can cut by index (and replay without Torch-Pruning); a BN subclass
# whose parts beyond the statistics hold no tensors (timm's BatchNormAct2d) is cut as a copy
CUTTABLE = ("Conv2d", "BatchNorm2d", "Linear", "BatchNormAct2d")


@dataclass(frozen=True)
class PruneGroup:
    """Channels that must be pruned together: the root conv's outputs and every layer they reach."""

    root: str  # the conv whose output channels define the group
    channels: int
    members: tuple[tuple[str, str], ...]  # (layer, "out" or "in") for each layer the cut reaches
    why_not: str = ""  # why the group is not offered (a layer edgecnn cannot cut), else ""

    @property
    def layers(self) -> set[str]:
        return {name for name, _ in self.members}


def keep_count(channels: int, ratio: float, multiple_of: int = 8) -> int:
    """Channels kept at keep `ratio`, rounded to a multiple of `multiple_of` where that leaves at
    least one multiple (runtimes run such channel counts faster), never all and never none."""
    keep = max(1, round(channels * ratio))
    if multiple_of > 1 and keep >= multiple_of:
        keep = max(multiple_of, round(keep / multiple_of) * multiple_of)
    return min(keep, channels)


def _graph(model, example):
    """Torch-Pruning's dependency graph of `model`, and the layer its output comes from (never cut)."""
    import torch_pruning as tp
    from torch import nn

    from edgecnn.transforms.base import run_with_hooks

    order = []

    def record(module, args, out) -> None:
        order.append(module)

    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    run_with_hooks(model, example, dict.fromkeys(layers, record))
    last = order[-1] if order else None
    # The output layer is kept out of the groups' roots, not out of the graph: ignoring a Linear
    # there maps the channels through the flatten before it wrongly (512 channels became 612)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
    return graph, last


def _members(graph, group, names) -> list[tuple[str, str, list[int]]]:
    """(layer, dim, channel indices) of every named layer a Torch-Pruning group reaches."""
    out = []
    for dep, idxs in group:
        module = dep.target.module
        if module in names:
            dim = "out" if graph.is_out_channel_pruning_fn(dep.handler) else "in"
            out.append((names[module], dim, [int(i) for i in idxs]))
    return out


def prune_groups(model, example) -> list[PruneGroup]:
    """Every group of channels rooted at a conv, in model order, each with the reason it cannot be
    pruned here where there is one."""
    return _groups(model, *_graph(model, example))


def _groups(model, graph, last) -> list[PruneGroup]:
    """`prune_groups` from `model`'s dependency graph and output layer (`_graph`)."""
    from torch import nn

    names = {m: n for n, m in model.named_modules()}
    ignored = [last] if last is not None else []
    groups = []
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=(nn.Conv2d,)):
        root = group[0].dep.target.module
        members = _members(graph, group, names)
        others = sorted({type(dep.target.module).__name__ for dep, _ in group if dep.target.module in names})
        odd = [t for t in others if t not in CUTTABLE]
        grouped = [n for n, _, _ in members if _is_grouped(model.get_submodule(n))]
        why = (
            f"reaches {', '.join(odd)}, which edgecnn cannot cut by index"
            if odd
            else f"reaches grouped conv {grouped[0]}"
            if grouped
            else ""
        )
        groups.append(
            PruneGroup(
                names[root],
                graph.get_out_channels(root),
                tuple((n, d) for n, d, _ in members),
                why,
            )
        )
    order = {n: i for i, (n, _) in enumerate(model.named_modules())}
    return sorted(groups, key=lambda g: order[g.root])


def check_ratio(ratio: float) -> float:
    if not 0 < ratio < 1:
        raise BadArgumentError(f"--prune is the fraction of channels removed, in (0, 1), got {ratio}")
    return ratio


def prune_uniform(model, ratio: float, example, multiple_of: int = 8):
    """(copy of `model` with `ratio` of the channels of every group it can prune removed, report):
    Torch-Pruning's uniform `pruning_ratio` with `round_to`. Groups it cannot prune stay whole and
    are listed in the report's skipped, with the reason."""
    check_ratio(ratio)
    groups = prune_groups(model, example)
    keep = {g.root: keep_count(g.channels, 1 - ratio, multiple_of) for g in groups if not g.why_not}
    keep = {root: n for root, n in keep.items() if n < next(g.channels for g in groups if g.root == root)}
    if not keep:
        why = (
            "; ".join(f"{g.root}: {g.why_not}" for g in groups if g.why_not)[:200] or "no conv roots a group"
        )
        raise BadArgumentError(f"--prune {ratio}: no group of channels can be pruned ({why})")
    new, report = prune(model, keep, example)
    report.skipped = [(g.root, g.why_not) for g in groups if g.why_not]
    return new, report


def _is_grouped(module) -> bool:
    """A grouped conv that is not depthwise: its channel blocks cannot be cut one by one."""
    from torch import nn

    return isinstance(module, nn.Conv2d) and 1 < module.groups < module.in_channels


def _importance(group) -> list[float]:
    """Each of the group's channels' L2 norm over every layer of the group (Torch-Pruning's group
    magnitude importance)."""
    import torch_pruning as tp

    return tp.importance.GroupMagnitudeImportance(p=2)(group).tolist()


def prune(model, keep: dict[str, int | list[int]], example) -> tuple[object, TransformReport]:
    """(copy of `model` with each group rooted at `keep`'s convs cut, report). A count keeps the
    group's strongest channels by L2 norm; a list keeps those channels of the root (a plan's choice,
    made on the BN-folded model, applied to the model with BN). The recipe records them per layer."""
    import torch_pruning as tp

    new = copy.deepcopy(model).eval()
    graph, last = _graph(new, example)  # one graph: the groups and the cuts both come from the copy's
    found = _groups(new, graph, last)
    groups = {g.root: g for g in found}
    # a root named by its group's conv: the graph may root the same group elsewhere (BN kept or not)
    by_conv = {n: g for g in found for n, d in g.members if d == "out" and n not in groups}
    keep = {
        (root if root in groups else by_conv[root].root if root in by_conv else root): v
        for root, v in keep.items()
    }
    for root, count in keep.items():
        if root not in groups:
            raise BadArgumentError(f"prune: {root} roots no group of channels (roots: {', '.join(groups)})")
        if groups[root].why_not:
            raise BadArgumentError(f"prune: the group of {root} {groups[root].why_not}")
        n = len(count) if isinstance(count, list) else count
        if not 1 <= n <= groups[root].channels or (
            isinstance(count, list) and not all(0 <= i < groups[root].channels for i in count)
        ):
            raise BadArgumentError(f"prune: {root} keeps 1..{groups[root].channels} channels, not {count}")
    names = {m: n for n, m in new.named_modules()}
    removed: dict[tuple[str, str], set[int]] = {}
    report = TransformReport("prune")
    for root, count in keep.items():
        module = new.get_submodule(root)
        if isinstance(count, list):
            cut = sorted(set(range(groups[root].channels)) - set(count))
        else:
            full = graph.get_pruning_group(
                module, tp.prune_conv_out_channels, list(range(groups[root].channels))
            )
            scores = _importance(full)
            cut = sorted(sorted(range(len(scores)), key=lambda i: -scores[i])[count:])
        if not cut:
            continue
        for name, dim, idxs in _members(
            graph, graph.get_pruning_group(module, tp.prune_conv_out_channels, cut), names
        ):
            removed.setdefault((name, dim), set()).update(idxs)
    layers: dict[str, dict[str, list[int]]] = {}
    for (name, dim), gone in removed.items():
        size = _size(new.get_submodule(name), dim)
        layers.setdefault(name, {})[dim] = [i for i in range(size) if i not in gone]
    replay(new, {"layers": layers})
    report.recipe = {"layers": layers}
    report.groups = {
        root: (groups[root].channels, len(count) if isinstance(count, list) else count)
        for root, count in keep.items()
    }
    log.info("pruned %d groups, %d layers cut", len(keep), len(layers))
    return new, report


def _size(module, dim: str) -> int:
    from torch import nn

    if isinstance(module, nn.BatchNorm2d):
        return module.num_features
    if isinstance(module, nn.Linear):
        return module.out_features if dim == "out" else module.in_features
    return module.out_channels if dim == "out" else module.in_channels


def replay(model, recipe: dict) -> None:
    """Cut each recorded layer to its kept channels (weights and statistics by index)."""
    for name, dims in recipe["layers"].items():
        model.set_submodule(name, _cut(model.get_submodule(name), dims.get("out"), dims.get("in")))


def _cut(module, out_idx, in_idx):
    """A copy of `module` keeping the output channels `out_idx` and input channels `in_idx` (None:
    all), on the module's device; on the meta device (a file's structure before its tensors) only the
    shapes. A depthwise conv keeps the same channels on both sides."""
    import torch

    device = next(module.parameters()).device
    with torch.device(device):
        new, state = _cut_on_device(module, out_idx, in_idx)
    if device.type != "meta":
        new.load_state_dict(state)
    return new.train(module.training)


def _cut_on_device(module, out_idx, in_idx):
    import torch
    from torch import nn

    def pick(t, idx, dim=0):
        return t if idx is None or t is None else t.index_select(dim, torch.as_tensor(idx, device=t.device))

    if isinstance(module, nn.BatchNorm2d) and type(module) is not nn.BatchNorm2d:
        return _cut_bn_subclass(module, out_idx, pick)
    if isinstance(module, nn.BatchNorm2d):
        new = nn.BatchNorm2d(
            len(out_idx), module.eps, module.momentum, module.affine, module.track_running_stats
        )
        state = {k: pick(v, out_idx) if v.dim() == 1 else v for k, v in module.state_dict().items()}
    elif isinstance(module, nn.Linear):
        out_f = len(out_idx) if out_idx is not None else module.out_features
        in_f = len(in_idx) if in_idx is not None else module.in_features
        new = nn.Linear(in_f, out_f, bias=module.bias is not None)
        state = {"weight": pick(pick(module.weight, out_idx), in_idx, 1)}
        if module.bias is not None:
            state["bias"] = pick(module.bias, out_idx)
    elif isinstance(module, nn.Conv2d):
        depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
        idx = out_idx if out_idx is not None else in_idx
        out_c = (
            len(idx if depthwise else out_idx) if (depthwise or out_idx is not None) else module.out_channels
        )
        in_c = out_c if depthwise else (len(in_idx) if in_idx is not None else module.in_channels)
        new = nn.Conv2d(
            in_c, out_c, module.kernel_size, module.stride, module.padding, module.dilation,
            out_c if depthwise else module.groups, module.bias is not None, module.padding_mode,
        )  # fmt: skip
        weight = pick(module.weight, idx if depthwise else out_idx)
        state = {"weight": weight if depthwise else pick(weight, in_idx, 1)}
        if module.bias is not None:
            state["bias"] = pick(module.bias, idx if depthwise else out_idx)
    else:
        raise TypeError(f"cannot cut channels of {type(module).__name__}")
    return new, state


def _cut_bn_subclass(module, out_idx, pick):
    """A copy of a BN subclass (its own forward kept) with its per-channel tensors cut; one whose other
    parts hold tensors (a per-channel activation) is not cut."""
    from torch import nn

    if any(True for child in module.children() for _ in child.parameters()):
        raise TypeError(f"cannot cut channels of {type(module).__name__} (its activation has tensors)")
    new = copy.deepcopy(module)
    for name, param in list(new.named_parameters(recurse=False)):
        setattr(new, name, nn.Parameter(pick(param.data, out_idx), requires_grad=param.requires_grad))
    for name, buf in list(new.named_buffers(recurse=False)):
        if buf is not None and buf.dim() == 1:
            new.register_buffer(name, pick(buf, out_idx))
    new.num_features = len(out_idx)
    return new, new.state_dict()
