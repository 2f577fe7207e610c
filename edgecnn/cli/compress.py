"""`edgecnn compress`: latency-aware compression for one runtime, with the per-layer choice table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgecnn.cli import _options as o
from edgecnn.cli._common import console, handle_errors
from edgecnn.cli._progress import reporting
from edgecnn.train.options import USES

Data = Annotated[
    str | None,
    typer.Option(
        help="Image folder or 'digits': error scores, BN statistics, distillation, test (default: "
        "a model file's own split, else digits)."
    ),
]
Runtime = Annotated[
    str, typer.Option("--runtime", "-r", help="Where it must be fast: onnxruntime, openvino, torch.")
]
Speedup = Annotated[float | None, typer.Option(help="Target speed-up over the original (> 1; default 2).")]
LatencyMs = Annotated[float | None, typer.Option(help="Target latency in ms (instead of --speedup).")]
DistillEpochs = Annotated[int, typer.Option(help="Distillation epochs; 0: plan, build, BN, export only.")]
Lr = Annotated[float, typer.Option(help="Peak learning rate of the distillation (a fine-tune: keep it low).")]
CalibImages = Annotated[
    int | None, typer.Option(help="Images that score each candidate's error (default: 64, or all).")
]
TestImages = Annotated[
    int | None, typer.Option(help="Score top-1 on the first N test images (default: all of them).")
]
Int8 = Annotated[
    bool,
    typer.Option("--int8", help="Plan precision too: each layer int8 (the runtime's fast scheme) or fp32."),
]
CalibSize = Annotated[int, typer.Option(help="Images calibrating the int8 export.")]
Refit = Annotated[
    bool,
    typer.Option(
        "--refit/--no-refit",
        help="Least-squares refit of each swapped layer's last factor on real images, judged on "
        "held-out ones.",
    ),
]
Rivals = Annotated[
    bool,
    typer.Option(
        "--rivals/--no-rivals",
        help="Where the plan may prune, also recover the plan without pruning and uniform pruning at "
        "the same request and ship the lowest validation loss (up to two more distillations).",
    ),
]
Headroom = Annotated[
    float | None,
    typer.Option(
        help="Aim this fraction faster than asked, for timing noise between runs "
        "(0: aim at the target itself; default 0.05, 0.10 with --int8).",
        show_default=False,
    ),
]
GridSpec = Annotated[
    list[str] | None,
    typer.Option(
        "--grid",
        metavar="KIND=V1,V2",
        help="Ranks tried per layer, KIND=V1,V2,... (repeatable; KIND: separable, bottleneck, lowrank, "
        "prune (fractions of a channel group kept), multiple_of), replacing that kind's default grid.",
        show_default=False,
    ),
]
Candidates = Annotated[
    str,
    typer.Option(
        help="What the plan may choose: channel pruning of groups inside blocks (prune) and the swaps "
        "(separable, bottleneck, lowrank), comma-separated."
    ),
]
Baseline = Annotated[
    str,
    typer.Option(
        help="What the speed-up is over: 'default' (the runtime's own float math: OpenVINO runs bf16 "
        "on CPUs with bf16 units) or 'fp32' (float layers pinned to fp32)."
    ),
]
Device = Annotated[str, typer.Option(help="Device the runtime runs on.")]
TrainDevice = Annotated[
    str | None,
    typer.Option(help="Where the student distils: auto, cpu or cuda (default: cuda when --device is a GPU)."),
]
Threads = Annotated[int | None, typer.Option(help="Inference threads (default: the runtime's).")]
Batch = Annotated[int, typer.Option(help="Batch size the latency is planned for.")]
Duration = Annotated[float, typer.Option(help="Timed seconds per model and round of the final measurement.")]
Cache = Annotated[
    bool, typer.Option("--cache/--no-cache", help="Reuse latencies measured before on this machine.")
]
Output = Annotated[
    Path | None,
    typer.Option("-o", "--output", help="Folder (default export/<model>/compress-<runtime>[-int8]/)."),
]


@handle_errors
def compress(
    model: o.Source,
    weights: o.Weights = None,
    data: Data = None,
    runtime: Runtime = "onnxruntime",
    speedup: Speedup = None,
    latency_ms: LatencyMs = None,
    distill_epochs: DistillEpochs = 2,
    lr: Lr = USES["compress"]["lr"],
    calib_images: CalibImages = None,
    test_images: TestImages = None,
    int8: Int8 = False,
    calib_size: CalibSize = 100,
    refit: Refit = True,
    rivals: Rivals = True,
    headroom: Headroom = None,
    grid: GridSpec = None,
    candidates: Candidates = "prune,separable,bottleneck,lowrank",
    baseline: Baseline = "default",
    input_size: o.InputSize = None,
    device: Device = "cpu",
    train_device: TrainDevice = None,
    threads: Threads = None,
    batch: Batch = 1,
    duration: Duration = 3.0,
    include: o.Include = None,
    exclude: o.Exclude = None,
    cache: Cache = True,
    output: Output = None,
    force: o.Force = False,
    trust_code: o.TrustCode = False,
    as_json: o.AsJson = False,
) -> None:
    """Choose per layer what to swap from latencies measured on RUNTIME, so the result is faster there.

    Prints the per-layer choice, then predicted vs measured latency, MACs, params, size and test top-1.
    """
    from edgecnn.compress import compress as run_compress

    opts = _compress_options(locals())
    with reporting(f"compressing {model}") as rep:
        result = run_compress(
            model,
            opts,
            weights=weights,
            on_progress=rep.on_progress,
            on_step=rep.on_step,
            on_epoch=rep.on_epoch,
        )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    _print(result)


def _compress_options(p: dict):
    """CompressOptions from the command's parameters, by name, validated."""
    from edgecnn.compress import CompressOptions
    from edgecnn.plan import Grid

    same = ("runtime", "latency_ms", "data", "calib_images", "test_images", "int8", "calib_size", "refit")
    same += ("distill_epochs", "lr", "input_size", "device", "train_device", "threads", "batch", "force")
    same += ("baseline", "rivals")
    return CompressOptions(
        speedup=2.0 if p["speedup"] is None and p["latency_ms"] is None else p["speedup"],
        use_cache=p["cache"],
        include=tuple(p["include"] or ()),
        exclude=tuple(p["exclude"] or ()),
        out_dir=p["output"],
        measure_seconds=p["duration"],
        headroom=p["headroom"],
        grid=Grid.parse(p["grid"] or ()).with_candidates(p["candidates"]),
        **{k: p[k] for k in same},
    ).validate()


def _print(result) -> None:
    from rich.table import Table

    plan = result.plan
    what = f"uniform pruning, {plan.uniform:.0%} of every group" if plan.uniform else "per-layer choice"
    table = Table(title=f"{result.model} for {result.runtime}: {what}")
    for col in ("layer", "choice", "ms before", "ms after", "error"):
        table.add_column(col, justify="left" if col in ("layer", "choice") else "right")
    for layer in plan.layers:
        figures = (layer.latency_before_ms, layer.latency_after_ms, layer.error)
        table.add_row(layer.name, layer.choice, *("-" if v is None else f"{v:.3f}" for v in figures))
    console.print(table)
    pruned = sum(layer.kind == "prune" for layer in plan.layers)
    swapped_line = f"{len(plan.swapped())} of {len(plan.layers) - pruned} layers swapped"
    if pruned:
        swapped_line += f", {pruned} channel groups pruned"
    if plan.int8_activations:
        fp32 = plan.fp32_layers()
        swapped_line += f"; int8 ({plan.int8_activations} activations) but for {len(fp32)} in fp32"
    cache = f"{plan.latencies_measured} latencies measured, {plan.latencies_cached} from the cache"
    if plan.latencies_retimed:
        cache += f" ({plan.latencies_retimed} cached ones timed again: timed while the machine was busy)"
    (m0, m1), (p0, p1), (s0, s1), (t0, t1) = result.macs, result.params, result.size_bytes, result.top1
    size = f", size {s0 / 1e6:.1f} -> {s1 / 1e6:.1f} MB" if s0 and s1 else ""
    lines = [
        f"{swapped_line}; {cache}",
        *_structure_lines(result.structure),
        _latency_line(result),
        *_steady_lines(result),
        *_overshoot_lines(result.plan),
        *_baseline_lines(result),
        f"MACs {m0 / 1e6:.1f}M -> {m1 / 1e6:.1f}M, params {p0 / 1e6:.2f}M -> {p1 / 1e6:.2f}M{size}",
        f"test top-1 {t0:.2f}% -> {t1:.2f}% on {result.test_set} "
        f"({result.distill_epochs} distillation epoch{'s' * (result.distill_epochs != 1)})",
        f"wrote {result.student_path} and {result.report}",
    ]
    if result.refit:
        before = sum(r.error_before for r in result.refit) / len(result.refit)
        after = sum(r.error_after for r in result.refit) / len(result.refit)
        lines.insert(
            -1,
            f"refit: output error of the {len(result.refit)} swapped layers {before:.3f} -> {after:.3f} "
            "(mean, on held-out calibration images, before distillation)",
        )
    if result.int8_given_back:
        back = result.int8_given_back
        lines.insert(
            2,
            f"int8: the student failed its check against PyTorch until {len(back)} more layers ran in fp32 "
            f"({', '.join(back)}); the latency above includes them",
        )
    for line in lines:
        console.print(line, highlight=False)


def _structure_lines(choice) -> list[str]:
    """The structures recovered alike at the same request, one row each, the shipped one marked."""
    if choice is None:
        return []
    width = max(len(c.label) for c in choice.contenders)
    lines = [
        f"each structure recovered alike; the lowest loss on {choice.val_images} validation images "
        "ships (test top-1 reported, not chosen by):",
        f"  {'':<{width}}  {'ms':>6}  val loss  val top-1  test top-1",
    ]
    for c in choice.contenders:
        shipped = "  shipped" if c.kind == choice.shipped else ""
        lines.append(
            f"  {c.label:<{width}}  {c.plan.predicted_ms:6.2f}  {c.val.loss:8.3f}  {c.val.top1:8.1f}%  "
            f"{c.test_top1:9.1f}%{shipped}"
        )
    return lines


def _baseline_lines(result) -> list[str]:
    """The student against the other baselines timed in the same rounds: the same pair with the other
    float math, where it differs here (OpenVINO: bf16 by default on CPUs with bf16 units, or pinned
    f32), and for an int8 plan export's plain INT8 of the original."""
    lines = []
    if result.other_speedup is not None:
        (original, student), math_ = result.other_ms, result.other_math
        other = "pinned" if result.baseline == "default" else f"{result.runtime}'s default"
        lines.append(
            f"with float layers in {math_} ({other}) both: {original:.2f} ms -> {student:.2f} ms in the "
            f"same rounds, {result.other_speedup:.2f}x"
        )
    if result.speedup_over_plain_int8 is not None:
        student, plain = result.int8_top1
        lines.append(
            f"vs plain INT8 of the original ({result.plain_int8_ms:.2f} ms in the same rounds): "
            f"{result.speedup_over_plain_int8:.2f}x; int8 artifacts' test top-1 {student:.2f}% vs "
            f"{plain:.2f}% (plain), run in {result.runtime}"
        )
        if result.shipped == "plain_int8":
            why = "as fast" if result.speedup_over_plain_int8 <= 1.0 else "more accurate"
            lines.append(
                f"warning: plain INT8 of the original is {why} here, so ship it, not the student: "
                f"{result.artifacts['plain_int8']}"
            )
    return lines


def _steady_lines(result) -> list[str]:
    """A warning where the machine moved too much for the speed-up to be steady after every round."""
    if result.steady:
        return []
    return [
        f"warning: the machine was busy: after {result.rounds} rounds the speed-up could be anywhere in "
        f"{result.speedup_interval[0]:.2f}-{result.speedup_interval[1]:.2f}x; run it again on a quieter "
        "machine, or with a longer --duration"
    ]


def _overshoot_lines(plan) -> list[str]:
    note = plan.overshoot()
    return [f"note: {note}"] if note else []


def _latency_line(result) -> str:
    """Measured against predicted, over the baseline the request was against."""
    plan = result.plan
    aimed = (
        f", aimed {plan.original_ms / plan.aim_ms:.2f}x"
        if plan.aim_ms and plan.aim_ms < plan.target_ms
        else ""
    )
    interval = ""
    if result.speedup_interval:
        lo, hi = result.speedup_interval
        interval = f", 90% {lo:.2f}-{hi:.2f}x over {result.rounds} rounds"
    return (
        f"latency ({result.baseline_label}): original {result.original_ms:.2f} ms -> "
        f"{result.student_ms:.2f} ms measured "
        f"({result.measured_speedup:.2f}x{interval}; asked {plan.original_ms / plan.target_ms:.2f}x{aimed}), "
        f"predicted {plan.predicted_speedup:.2f}x = {result.predicted_ms_here:.2f} ms here "
        f"({result.prediction_error_here:+.1%}; {plan.predicted_ms:.2f} ms when planned)"
    )
