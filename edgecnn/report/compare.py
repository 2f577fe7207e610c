"""Join results of several runs (machines, thread counts, variants) into one table with ratios.

Rows are (model, variant, runtime, batch); one column per run; the ratio column divides each run's
metric by the baseline run's, so "2.00x" reads "twice the baseline's latency".
"""

from __future__ import annotations

from dataclasses import dataclass

from edgecnn.bench.schema import BenchRun
from edgecnn.errors import BadArgumentError, UnknownNameError

METRICS = {
    "median_ms": ("latency", "median_ms"),
    "p90_ms": ("latency", "p90_ms"),
    "p99_ms": ("latency", "p99_ms"),
    "throughput": ("latency", "throughput"),
    "peak_mem": ("memory", "peak_over_baseline_bytes"),
    "top1": ("accuracy", "top1"),
}

# The names the bench table and its JSON show, each for the metric it is: "p50 ms" is the median.
ALIASES = {
    "p50_ms": "median_ms", "p50": "median_ms", "median": "median_ms", "p90": "p90_ms", "p99": "p99_ms",
    "img/s": "throughput", "top-1": "top1", "memory": "peak_mem", "peak_over_baseline_bytes": "peak_mem",
}  # fmt: skip

UNITS = {
    "median_ms": "ms", "p90_ms": "ms", "p99_ms": "ms", "throughput": "images/s", "peak_mem": "bytes",
    "top1": "%",
}  # fmt: skip


@dataclass
class Comparison:
    metric: str
    labels: list[str]
    baseline: int
    rows: list[tuple[tuple, list[float | None]]]  # (model, variant, runtime, batch), one value per run

    def ratios(self, values: list[float | None]) -> list[float | None]:
        base = values[self.baseline]
        return [None if v is None or not base else v / base for v in values]


def run_labels(runs: list[BenchRun]) -> list[str]:
    """Each run's machine label, with its file's name where two runs share one (compare, plot)."""
    labels = [r.label for r in runs]
    if len(set(labels)) < len(labels):  # same machine and threads: tell them apart by file name
        from pathlib import Path

        labels = [
            f"{lab} [{Path(r.path).stem}]" if r.path else lab for lab, r in zip(labels, runs, strict=True)
        ]
    return labels


def compare(runs: list[BenchRun], *, metric: str = "median_ms", baseline: int = 0) -> Comparison:
    metric = ALIASES.get(metric, metric)
    if metric not in METRICS:
        raise UnknownNameError("metric", metric, [*METRICS, *ALIASES])
    if len(runs) < 2:
        raise BadArgumentError("compare needs at least two result files")
    if not 0 <= baseline < len(runs):
        raise BadArgumentError(f"--baseline must be between 0 and {len(runs) - 1}, got {baseline}")
    section, key = METRICS[metric]
    table: dict[tuple, list[float | None]] = {}
    for i, run in enumerate(runs):
        for row in run.rows:
            k = (row.model, row.variant, row.runtime, row.batch)
            values = table.setdefault(k, [None] * len(runs))
            part = getattr(row, section)  # the row's LatencyStats, Memory or Accuracy, if measured
            values[i] = getattr(part, key) if part is not None and not row.error else None
    if not any(sum(v is not None for v in values) >= 2 for values in table.values()):
        raise BadArgumentError(
            f"nothing to compare: no (model, variant, runtime, batch) row has a {metric} in two of the files"
        )
    return Comparison(metric, run_labels(runs), baseline, list(table.items()))


def markdown(c: Comparison) -> str:
    ratio_cols = [f"{lab} / base" for i, lab in enumerate(c.labels) if i != c.baseline]
    head = ["model", "variant", "runtime", "batch", *c.labels, *ratio_cols]
    lines = [
        f"{c.metric} ({UNITS[c.metric]}); ratios against {c.labels[c.baseline]}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for key, values in c.rows:
        ratios = [r for i, r in enumerate(c.ratios(values)) if i != c.baseline]
        lines.append("| " + " | ".join(_fmt_row(key, values, ratios)) + " |")
    return "\n".join(lines) + "\n"


def _what(model: str, variant: str) -> str:
    """'resnet18 fp32', or 'resnet18.sep-t2 fp32' as it is: a variant that names its model already."""
    return variant if variant.startswith(f"{model}.") else f"{model} {variant}"


def _fmt_row(key, values, ratios) -> list[str]:
    fmt = [("-" if v is None else f"{v:.2f}" if abs(v) >= 1 else f"{v:.3f}") for v in values]
    rat = [("-" if r is None else f"{r:.2f}x") for r in ratios]
    return [str(k) for k in key] + fmt + rat


def rich_table(c: Comparison, width: int | None = None):
    """The comparison with one column per result file, numbered (#1, #2, ...) and named under the
    table, so machine labels never widen it; columns a narrow terminal has no room for are dropped
    and named, never cut."""
    from rich.console import Group
    from rich.text import Text

    from edgecnn.report.narrow import constants, heading, left_out, narrow_table, without

    names = [f"#{i + 1}" for i in range(len(c.labels))]
    columns = ["model", "variant", "runtime", "batch", *names]
    columns += [f"{n}/#{c.baseline + 1}" for i, n in enumerate(names) if i != c.baseline]
    rows = []
    for key, values in c.rows:
        ratios = [r for i, r in enumerate(c.ratios(values)) if i != c.baseline]
        rows.append(_fmt_row(key, values, ratios))
    const = constants(columns, rows, ("model", "batch"))  # said once, in the title
    columns, rows = without(columns, rows, const)
    if "model" in columns:  # models differ: each row names its own, in one column with its variant
        rows = [[_what(r[0], r[1]), *r[2:]] for r in rows]
        columns = ["model / variant", *columns[2:]]
    ids = [col for col in columns if col in ("model / variant", "variant", "runtime", "batch")]
    priority = [*ids, *names, *columns[len(ids) + len(names) :]]  # a row's identity is never dropped
    # short lines: rich wraps a title at the table's width
    title = f"{c.metric} ({UNITS[c.metric]}) per result file\nratios against #{c.baseline + 1}"
    title += f", {heading(const)}" if const else ""
    left = ("model / variant", "variant", "runtime")
    table, hidden = narrow_table(title, columns, rows, priority=priority, width=width, left=left, keep=ids)
    key = [f"#{i + 1}: {label}" for i, label in enumerate(c.labels)]
    return Group(table, *(Text(line) for line in filter(None, [*key, left_out(hidden, "see --markdown")])))
