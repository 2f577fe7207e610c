"""Plots: latency per image against top-1 (Pareto front marked) and against MACs per image.

Read at a glance: colour is the runtime, marker the precision, both in legends; each point carries a
number whose key (model, variant, batch, run) sits under the panels, so labels never pile up when
top-1 ties; latency is per image, so batch 1 and batch 32 points compare; a panel with nothing to
show says why instead of drawing empty axes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgecnn.artifacts import atomic_output, check_writable
from edgecnn.bench.schema import BenchRow, BenchRun
from edgecnn.errors import BadArgumentError

FORMATS = (".png", ".svg", ".pdf")
RUNTIME_COLOURS = {
    "torch": "tab:orange",
    "onnxruntime": "tab:blue",
    "openvino": "tab:purple",
    "tensorrt": "tab:green",
}
SPARE_COLOURS = ("tab:brown", "tab:pink", "tab:olive", "tab:cyan")
KEY_COLUMN_CHARS = 75  # monospace characters that fit in half the figure's width
PRECISION_MARKERS = {"fp32": "o", "fp16": "s", "int8": "^"}
SPARE_MARKERS = ("D", "v", "P", "X")


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both lower latency (x) and higher accuracy (y)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


@dataclass
class Point:
    row: BenchRow
    key: int  # the number drawn beside it: one per (run, model, variant, batch)
    ms: float  # median latency per image

    @property
    def top1(self) -> float | None:
        return self.row.accuracy.top1 if self.row.accuracy else None


def _points(runs: list[BenchRun]) -> tuple[list[Point], list[str]]:
    """The successful rows as points, and the key's lines (number: what it stands for)."""
    from edgecnn.report.compare import run_labels
    from edgecnn.report.tables import variant_base

    keys: dict[tuple, int] = {}
    points = []
    for number, run in enumerate(runs, 1):
        for r in run.rows:
            if r.error or not r.latency:
                continue
            base = variant_base(r).removeprefix(f"{r.model}.")  # "resnet18.original" -> "original"
            what = (number if len(runs) > 1 else 0, r.model, base, r.batch)
            key = keys.setdefault(what, len(keys) + 1)
            points.append(Point(r, key, r.latency.median_ms / max(r.batch, 1)))
    lines = [
        f"{k:>2}  {model}{f' {base}' if base and base != model else ''}  batch {batch}"
        + (f"  run #{number}" if number else "")
        for (number, model, base, batch), k in keys.items()
    ]
    # the runs by number, as compare heads its columns (two of one machine: by file name)
    runs_named = [f"#{i}: {label}" for i, label in enumerate(run_labels(runs), 1)] if len(runs) > 1 else []
    return points, lines + runs_named


def _styles(points: list[Point]) -> tuple[dict, dict]:
    """Colour per runtime and marker per precision, fixed for the known ones."""
    colours, markers = {}, {}
    for p in points:
        rt, pr = p.row.runtime, p.row.precision
        colours.setdefault(rt, RUNTIME_COLOURS.get(rt) or SPARE_COLOURS[len(colours) % len(SPARE_COLOURS)])
        markers.setdefault(pr, PRECISION_MARKERS.get(pr) or SPARE_MARKERS[len(markers) % len(SPARE_MARKERS)])
    return colours, markers


def _scatter(ax, points, xs, ys, colours, markers, front=()):
    for i, (p, x, y) in enumerate(zip(points, xs, ys, strict=True)):
        edge = "black" if i in front else "none"
        ax.scatter(
            x, y, s=70, c=colours[p.row.runtime], marker=markers[p.row.precision], edgecolors=edge, zorder=3
        )
        ax.annotate(str(p.key), (x, y), xytext=(5, 4), textcoords="offset points", fontsize=8)


def _empty(ax, title: str, why: str) -> None:
    ax.set_title(title)
    ax.text(
        0.5, 0.5, why, ha="center", va="center", wrap=True, fontsize=10, color="0.35", transform=ax.transAxes
    )
    ax.set_xticks([])
    ax.set_yticks([])


def _log_if_wide(ax, xs, ys, wide: float = 5.0) -> None:
    """Log axes where values span more than `wide`x: PyTorch eager at 7 ms would otherwise squeeze
    the runtimes at 0.7-1.3 ms into one corner."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")  # 0.5, 1, 2 rather than 5x10^-1
    # of the minor ticks only 2 and 5 of each decade are labelled: all eight collide
    some = FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else "")
    for values, axis, scale in ((xs, ax.xaxis, ax.set_xscale), (ys, ax.yaxis, ax.set_yscale)):
        if values and max(values) / max(min(values), 1e-12) > wide:
            scale("log")
            axis.set_major_formatter(plain)
            axis.set_minor_formatter(some)


def plot(runs: list[BenchRun], path: str | Path, *, force: bool = False) -> Path:
    """Two panels (MACs vs latency; latency vs top-1 with its Pareto front) and a key of the rows."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:  # before drawing: matplotlib would fail after the work
        raise BadArgumentError(f"plot writes {', '.join(FORMATS)} files, not '{path.name}'")
    check_writable(path, force=force)
    points, key = _points(runs)
    if not points:
        raise BadArgumentError("no successful rows with latency to plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    colours, markers = _styles(points)
    columns = 2 if max(map(len, key)) <= KEY_COLUMN_CHARS else 1  # long lines would run into the next
    key_rows = (len(key) + columns - 1) // columns
    fig = plt.figure(figsize=(13, 5.2 + 0.22 * key_rows))
    grid = fig.add_gridspec(2, 2, height_ratios=[5, 0.3 + 0.22 * key_rows])
    left, right = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    scored = _accuracy_panel(right, points, colours, markers)
    _macs_panel(left, points, colours, markers)
    handles = [Line2D([], [], ls="", marker="s", ms=9, c=c, label=rt) for rt, c in colours.items()]
    handles += [Line2D([], [], ls="", marker=m, ms=8, c="0.3", label=pr) for pr, m in markers.items()]
    if scored:
        handles.append(Line2D([], [], c="black", ls="--", label="Pareto front"))
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False, fontsize=9)
    text = fig.add_subplot(grid[1, :])
    text.axis("off")
    for col, lines in enumerate([key[i : i + key_rows] for i in range(0, len(key), key_rows)]):
        text.text(
            0.02 + 0.5 * col, 1.0, "\n".join(lines), va="top", ha="left", fontsize=9, family="monospace"
        )
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    with atomic_output(path, force=force) as tmp:
        fig.savefig(tmp, format=path.suffix.lower().lstrip("."), dpi=120)
    plt.close(fig)
    return path


def _accuracy_panel(ax, points, colours, markers) -> bool:
    """Latency vs top-1 with the Pareto front; whether any row had a top-1."""
    scored = [p for p in points if p.top1 is not None]
    title = "latency vs top-1 (Pareto front: black outline)"
    if not scored:
        _empty(ax, title, "no top-1 in these results:\nbench with --data DIR (or --data digits)")
        return False
    xs, ys = [p.ms for p in scored], [p.top1 for p in scored]
    front = pareto_front(list(zip(xs, ys, strict=True)))
    _scatter(ax, scored, xs, ys, colours, markers, set(front))
    fx, fy = zip(*sorted((xs[i], ys[i]) for i in front), strict=True)
    ax.step(fx, fy, where="post", c="black", lw=1.5, ls="--", zorder=2)
    _log_if_wide(ax, xs, [])
    ax.set_xlabel("median latency per image (ms)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return True


def _macs_panel(ax, points, colours, markers) -> None:
    counted = [p for p in points if p.row.macs]
    title = "MACs vs measured latency"
    if not counted:
        _empty(ax, title, "no MAC counts: artifacts benched on their own\n(bench the model by name for MACs)")
        return
    xs, ys = [p.row.macs / 1e9 for p in counted], [p.ms for p in counted]
    _scatter(ax, counted, xs, ys, colours, markers)
    _log_if_wide(ax, xs, ys)
    ax.set_xlabel("GMACs per image")
    ax.set_ylabel("median latency per image (ms)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
