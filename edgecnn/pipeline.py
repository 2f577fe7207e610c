"""The whole job in one call: reference model -> fold BN -> swap from the weights -> distill ->
export ONNX / OpenVINO (fp32 and int8) -> benchmark every variant -> one table and a plot.

This is what `edgecnn pipeline` and `make demo` run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class PipelineOptions:
    data: str = "digits"
    input_size: tuple[int, int] | None = None
    epochs: int = 3  # reference model
    distill_epochs: int = 2
    separable: bool = True
    bottleneck: bool = False
    rank: int = 2  # separable multiplier T
    rank_ratio: float = 0.5  # bottleneck ranks as a fraction of C and N
    feature_steps: int = 100
    runtimes: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
    int8: bool = True
    seconds: float = 2.0  # minimum timed seconds per row
    memory: bool = True
    out_dir: Path | None = None
    seed: int = 0


@dataclass
class PipelineResult:
    run: object  # BenchRun
    out_dir: Path
    reference: dict
    variants: dict[str, dict] = field(default_factory=dict)  # name -> {path, macs, params, distill...}
    table_md: Path | None = None
    results_json: Path | None = None
    plot: Path | None = None


def run_pipeline(
    model: str,
    options: PipelineOptions | None = None,
    *,
    on_message: Callable[[str], None] | None = None,
    on_step=None,
    on_epoch=None,
) -> PipelineResult:
    from edgecnn.bench import BenchOptions, bench, save
    from edgecnn.report.plot import plot
    from edgecnn.report.tables import markdown
    from edgecnn.train import DistillOptions, TrainOptions, distill
    from edgecnn.train.api import reference_model
    from edgecnn.transforms import SwapOptions, convert, save_with_recipe

    opts = options or PipelineOptions()
    say = on_message or (lambda msg: log.info("%s", msg))
    out = Path(opts.out_dir or Path("export") / model / "pipeline")
    out.mkdir(parents=True, exist_ok=True)

    say(f"reference model: {model} trained on {opts.data} (cached after the first run)")
    ref, info = reference_model(
        model,
        opts.data,
        input_size=opts.input_size,
        epochs=opts.epochs,
        seed=opts.seed,
        on_step=on_step,
        on_epoch=on_epoch,
    )
    size = tuple(info["input_size"])
    say(f"reference test top-1 {info['test_top1']:.2f}%")
    result = PipelineResult(None, out, info)

    original = convert(ref, fold_bn=True, input_size=size)
    paths = [
        str(
            save_with_recipe(
                original.model, original.recipe, out / f"{model}.original.safetensors", force=True
            )
        )
    ]
    result.variants["original"] = {
        "path": paths[0],
        "macs": original.macs_after,
        "params": original.params_after,
    }
    swaps = []
    if opts.separable:
        swaps.append(("separable", dict(separable=SwapOptions(rank=opts.rank).validate("separable"))))
    if opts.bottleneck:
        swaps.append(
            ("bottleneck", dict(bottleneck=SwapOptions(rank_ratio=opts.rank_ratio).validate("bottleneck")))
        )
    for name, kwargs in swaps:
        # Swap the raw convs and keep their BatchNorms while distilling: a student whose BN is already
        # folded trains unstably (DESIGN.md). Export folds BN into the convs at the end.
        student = convert(ref, fold_bn=False, input_size=size, **kwargs)
        fewer = original.macs_after / student.macs_after
        say(f"{name}: {fewer:.2f}x fewer MACs than the BN-folded original; distilling")
        train = TrainOptions(
            epochs=opts.distill_epochs, lr=0.02, feature_steps=opts.feature_steps, seed=opts.seed
        )
        distilled = distill(
            ref,
            student,
            opts.data,
            DistillOptions(train=train),
            output=out / f"{model}.{name}.safetensors",
            force=True,
            on_step=on_step,
            on_epoch=on_epoch,
        )
        path, top1 = distilled.path, distilled.student_test_top1
        paths.append(str(path))
        result.variants[name] = {
            "path": str(path),
            "macs": student.macs_after,
            "params": student.params_after,
            "mac_reduction": original.macs_after / student.macs_after,
            "test_top1": top1,
            "initial_val_top1": distilled.training.initial_val_top1,
        }
        before = distilled.training.initial_val_top1
        say(f"{name}: test top-1 {top1:.2f}% after distillation (before: {before:.2f}% val)")

    say("exporting and benchmarking every variant")
    bench_opts = BenchOptions(
        runtimes=opts.runtimes,
        precisions=("fp32", "int8") if opts.int8 else ("fp32",),
        data=opts.data,
        calib=opts.data,
        export_dir=str(out / "artifacts"),
        min_seconds=opts.seconds,
        min_iters=20,
        warmup_s=0.5,
        memory=opts.memory,
    )
    result.run = bench(paths, bench_opts, on_step=lambda msg: say(msg))
    result.run.settings["pipeline"] = {"model": model, "reference": info, "variants": result.variants}
    result.results_json, _ = save(result.run, out / "results.json")
    result.table_md = out / "results.md"
    result.table_md.write_text(markdown(result.run))
    result.plot = plot([result.run], out / "results.png", force=True)
    return result
