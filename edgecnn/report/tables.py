"""One benchmark run as a rich table or markdown; the same columns in both."""

from __future__ import annotations

import re

from edgecnn.bench.schema import BenchRow, BenchRun

SLOWER = "!"  # marks a reduced-precision row slower than its fp32 row

COLUMNS = (
    "model", "variant", "runtime", "batch", "MACs", "params", "file", "p50 ms", "p90 ms", "p99 ms",
    "img/s", "peak mem", "top-1", "top-5",
)  # fmt: skip


def _mb(n) -> str:
    return "-" if n is None else f"{n / 1e6:.1f} MB"


def _ms(v: float) -> str:
    return f"{v:.2f}" if v >= 1 else f"{v:.3f}"


def _macs(n) -> str:
    if n is None:
        return "-"
    return f"{n / 1e9:.2f} G" if n >= 1e8 else f"{n / 1e6:.2f} M"


def _base(row: BenchRow) -> str:
    """The variant without its precision and file suffix: rows of one model in different precisions
    share it ("int8u8" / "fp32" -> "", "a.int8.onnx" / "a.onnx" -> "a")."""
    from edgecnn.runtime import INT8_ACTIVATIONS, PRECISIONS, artifact_suffixes, precision_tag

    tags = {precision_tag(p, s) for p in PRECISIONS for s in INT8_ACTIVATIONS}
    drop = tags | {s.lstrip(".") for s in artifact_suffixes()}
    return ".".join(t for t in re.split(r"[ .]", row.variant) if t and t not in drop)


def slower_than_fp32(run: BenchRun) -> list[tuple[BenchRow, BenchRow]]:
    """(row, its fp32 row) for every reduced-precision row measured slower than the same model in fp32
    on the same runtime, device and batch: an INT8 model that is slower is worth knowing about."""
    from edgecnn.runtime import is_baseline

    fp32 = {
        (r.model, _base(r), r.runtime, r.device, r.batch, r.threads): r
        for r in run.rows
        if is_baseline(r.precision) and r.latency
    }
    out = []
    for r in run.rows:
        ref = fp32.get((r.model, _base(r), r.runtime, r.device, r.batch, r.threads))
        if (
            not is_baseline(r.precision)
            and r.latency
            and ref
            and r.latency["median_ms"] > ref.latency["median_ms"]
        ):
            out.append((r, ref))
    return out


def notes(run: BenchRun) -> list[str]:
    """Lines printed under the table."""
    return [
        f"{SLOWER} {r.model} {r.variant} on {r.runtime} batch {r.batch} is slower than fp32: "
        f"{_ms(r.latency['median_ms'])} vs {_ms(ref.latency['median_ms'])} ms"
        for r, ref in slower_than_fp32(run)
    ]


def cells(row: BenchRow, slower: bool = False) -> list[str]:
    lat, mem, acc = row.latency or {}, row.memory or {}, row.accuracy or {}
    peak = mem.get("peak_over_baseline_bytes")

    def ms(key):
        return _ms(lat[key]) if key in lat else "-"

    return [
        row.model,
        row.variant,
        row.runtime,
        str(row.batch),
        _macs(row.macs),
        "-" if row.params is None else f"{row.params / 1e6:.2f} M",
        _mb(row.file_size_bytes),
        ms("median_ms") + (f" {SLOWER}" if slower else ""),
        ms("p90_ms"),
        ms("p99_ms"),
        f"{lat['throughput']:.1f}" if lat else "-",
        "-" if peak is None else f"{peak / 2**20:.0f} MiB",
        f"{acc['top1']:.2f}" if acc else "-",
        f"{acc['top5']:.2f}" if acc else "-",
    ]


def rich_table(run: BenchRun):
    from rich.table import Table

    slow = {id(r) for r, _ in slower_than_fp32(run)}
    table = Table(title=f"{run.label} — {run.machine.get('cpu')}", caption="\n".join(notes(run)) or None)
    for col in COLUMNS:
        table.add_column(col, justify="left" if col in ("model", "variant", "runtime") else "right")
    for row in run.rows:
        if row.error:
            from rich.markup import escape

            hint = f" ({row.hint})" if row.hint else ""
            table.add_row(
                row.model, row.variant, row.runtime, str(row.batch), f"[red]{escape(row.error + hint)}[/]"
            )
        else:
            table.add_row(*cells(row, id(row) in slow))
    return table


def markdown(run: BenchRun) -> str:
    lines = [
        f"Machine: {run.machine.get('cpu')}, {run.machine.get('logical_cores')} cores, "
        f"ISA {' '.join(run.machine.get('isa', []))}; threads {run.settings.get('threads') or 'default'}",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    slow = {id(r) for r, _ in slower_than_fp32(run)}
    for row in run.rows:
        if row.error:
            err = row.error + (f" ({row.hint})" if row.hint else "")
            lines.append(f"| {row.model} | {row.variant} | {row.runtime} | {row.batch} | error: {err} |")
        else:
            lines.append("| " + " | ".join(cells(row, id(row) in slow)) + " |")
    extra = notes(run)
    return "\n".join(lines + (["", *extra] if extra else [])) + "\n"
