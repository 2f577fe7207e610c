"""Plots: latency vs top-1 with the Pareto front marked, and MACs vs measured latency."""

from __future__ import annotations

from pathlib import Path

from edgecnn.artifacts import atomic_output, check_writable
from edgecnn.bench.schema import BenchRun
from edgecnn.errors import BadArgumentError


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both lower latency (x) and higher accuracy (y)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


FORMATS = (".png", ".svg", ".pdf")


def plot(runs: list[BenchRun], path: str | Path, *, force: bool = False) -> Path:
    path = Path(path)
    if path.suffix.lower() not in FORMATS:  # before drawing: matplotlib would fail after the work
        raise BadArgumentError(f"plot writes {', '.join(FORMATS)} files, not '{path.name}'")
    check_writable(path, force=force)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(run, r) for run in runs for r in run.rows if r.latency and not r.error]
    if not rows:
        raise BadArgumentError("no successful rows with latency to plot")
    acc_rows = [(run, r) for run, r in rows if r.accuracy]
    fig, axes = plt.subplots(1, 2 if acc_rows else 1, figsize=(13 if acc_rows else 7, 5), squeeze=False)
    many = len(runs) > 1

    def name(run, r) -> str:
        return f"{r.model} {r.variant} {r.runtime}" + (f" @ {run.label}" if many else "")

    ax = axes[0][0]
    for run, r in rows:
        if r.macs:
            ax.scatter(r.macs / 1e9, r.latency["median_ms"], s=25)
            ax.annotate(name(run, r), (r.macs / 1e9, r.latency["median_ms"]), fontsize=6)
    macs = [r.macs for _, r in rows if r.macs]
    if macs and max(macs) / min(macs) > 20:
        ax.set_xscale("log")
    lat = [r.latency["median_ms"] for _, r in rows]
    if max(lat) / max(min(lat), 1e-9) > 20:
        ax.set_yscale("log")
    ax.set_xlabel("GMACs per image")
    ax.set_ylabel("median latency (ms)")
    ax.set_title("MACs vs measured latency")
    ax.grid(alpha=0.3)
    if acc_rows:
        ax = axes[0][1]
        pts = [(r.latency["median_ms"], r.accuracy["top1"]) for _, r in acc_rows]
        front = set(pareto_front(pts))
        for i, ((run, r), (x, y)) in enumerate(zip(acc_rows, pts, strict=True)):
            ax.scatter(x, y, s=40 if i in front else 20, c="tab:red" if i in front else "tab:blue")
            ax.annotate(name(run, r), (x, y), fontsize=6)
        fx, fy = zip(*sorted(pts[i] for i in front), strict=True)
        ax.step(fx, fy, where="post", c="tab:red", alpha=0.6, label="Pareto front")
        ax.set_xlabel("median latency (ms)")
        ax.set_ylabel("top-1 (%)")
        ax.set_title("latency vs top-1")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_output(path, force=force) as tmp:
        fig.savefig(tmp, format=path.suffix.lower().lstrip("."), dpi=120)
    plt.close(fig)
    return path
