"""The whole job in one call: reference model -> fold BN -> swap from the weights -> distill ->
export ONNX / OpenVINO (fp32 and int8) -> benchmark every variant -> one table and a plot.

With `speedup`, the students come from `compress` instead of uniform swaps: one per runtime that can
plan (a node profiler), each planned from latencies measured on that runtime, so the table shows
each compact variant against the original on the runtime it was made for.

This is what `edgecnn pipeline` and `make demo` run.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class PipelineOptions:
    data: str | None = None  # None: the split a model file records, else the digits
    input_size: tuple[int, int] | None = None
    epochs: int = 3  # reference model
    distill_epochs: int = 2
    batch_size: int = 64  # training and distillation
    train_device: str = "cpu"  # where the reference and students train: cpu, cuda or auto
    separable: bool = True
    bottleneck: bool = False
    rank: int = 2  # separable multiplier T
    rank_ratio: float = 0.5  # bottleneck ranks as a fraction of C and N
    feature_steps: int = 100
    runtimes: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
    speedup: float | None = None  # compress for each planning runtime instead of uniform swaps
    int8: bool = True
    seconds: float = 2.0  # minimum timed seconds per row
    memory: bool = True
    out_dir: Path | None = None
    force: bool = False  # replace the results of an earlier run in out_dir
    seed: int = 0


@dataclass
class Variant:
    """One model the pipeline benchmarks: the Model it holds (saved as a model file) and what the run
    measured of it. bench takes the Model as it is; its rows name it by `source`."""

    model: object = field(repr=False)  # Model
    macs: int
    params: int
    mac_reduction: float | None = None  # fewer MACs than the BN-folded original
    test_top1: float | None = None  # where it was made (distillation or compress)
    test_set: str | None = None
    initial_val_top1: float | None = None  # a uniform student's, before distillation
    runtime: str | None = None  # the runtime a compressed student was planned on
    requested_speedup: float | None = None
    planned_speedup: float | None = None
    measured_speedup: float | None = None  # compress's own timing
    baseline: str | None = None  # what measured_speedup is over, in words (compress's baseline_label)
    # compress's, with both in the other float math where it differs here (OpenVINO: f32 pinned)
    other_speedup: float | None = None
    other_math: str | None = None
    float_math: str | None = None  # what compress ran both sides' float layers in (OpenVINO says)
    predicted_ms: float | None = None
    # the bench's rows on `runtime` at compress's baseline (fp32, or bf16 where that is OpenVINO's
    # default here), against the original's
    bench_speedup: float | None = None
    table_top1: float | None = None  # its fp32 row's top-1 in the bench table

    @property
    def path(self) -> str:
        return self.model.path

    @property
    def source(self) -> str:
        return Path(self.path).name.removesuffix(".safetensors")

    def to_dict(self) -> dict:
        """The fields that hold a value, with the model file's path (results.json's "variants")."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        return {"path": self.path, **{k: v for k, v in values.items() if v is not None}}


@dataclass
class PipelineResult:
    run: object  # BenchRun
    out_dir: Path
    reference: dict
    variants: dict[str, Variant] = field(default_factory=dict)
    table_md: Path | None = None
    results_json: Path | None = None
    plot: Path | None = None


@dataclass
class _Hooks:
    """Where the pipeline reports: messages, training steps and epochs, and stages of a compress."""

    say: Callable[[str], None]
    on_step: Callable | None = None
    on_epoch: Callable | None = None
    on_progress: Callable[[str, int, int], None] | None = None


def run_pipeline(
    model: str,
    options: PipelineOptions | None = None,
    *,
    on_message: Callable[[str], None] | None = None,
    on_step=None,
    on_epoch=None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> PipelineResult:
    from edgecnn.transforms import convert, save_with_recipe, saved_model

    hooks = _Hooks(on_message or (lambda msg: log.info("%s", msg)), on_step, on_epoch, on_progress)
    model, given, opts, out, journal = _prepare(model, options or PipelineOptions())
    ref, info = _reference(model, given, opts, hooks)
    size = tuple(info["input_size"])
    hooks.say(f"reference test top-1 {info['test_top1']:.2f}% on {info['test_set']}")
    result = PipelineResult(None, out, info)

    original = convert(ref, fold_bn=True, input_size=size)
    with journal.writing():  # from here, a kill leaves outputs the next run of this pipeline replaces
        path = save_with_recipe(
            original.model, original.recipe, out / f"{model}.original.safetensors", force=True
        )
        folded = saved_model(original.model, original.recipe, path, ref.base)
        result.variants["original"] = Variant(folded, original.macs_after, original.params_after)
        if opts.speedup:
            _compressed(model, ref, size, opts, result, hooks)
        else:
            distill_data = opts.data if given is None else None  # a given file distils on its own split
            _uniform_students(model, ref, original, size, distill_data, opts, result, hooks)
        _bench_and_report(model, opts, result, hooks)
    return result


def _prepare(model: str, opts: PipelineOptions):
    """(model name, the given reference file or None, options, output folder), checked before work."""
    from edgecnn.artifacts import check_dir_writable
    from edgecnn.data import DIGITS, open_dataset
    from edgecnn.zoo.external import short_name

    given = _given_reference(model, opts)  # a model file: checked (classes, data) before any work
    if given is not None:
        model = given.card.name
    elif opts.data is None:
        opts = dataclasses.replace(opts, data=DIGITS)
    out = Path(opts.out_dir or Path("export") / short_name(model) / "pipeline")
    if opts.data is not None and str(opts.data) != DIGITS:  # missing, empty or one-class: one line now
        open_dataset(opts.data, None, min_classes=2)
    check_dir_writable(out)
    journal = _check_results(out, model, opts.force)
    out.mkdir(parents=True, exist_ok=True)
    return model, given, opts, out, journal


RESULTS = ("results.json", "results.csv", "results.md", "results.png")


def _check_results(out: Path, model: str, force: bool):
    """An earlier run's results and model files in `out` are never replaced without --force, but for
    what an interrupted pipeline left there; every output name is checked for length before any
    work. Returns the run journal."""
    from edgecnn.artifacts import ArtifactExistsError, RunJournal, check_writable

    earlier = [out / name for name in RESULTS if (out / name).exists()]
    earlier += sorted(out.glob(f"{model}.*.safetensors")) if out.is_dir() else []
    names = {*RESULTS, *(f"{model}.{kind}.safetensors" for kind in ("original", "separable", "bottleneck"))}
    journal = RunJournal(out, "pipeline", [out / n for n in sorted(names | {p.name for p in earlier})])
    if earlier and not force and not journal.resumes():
        raise ArtifactExistsError(
            f"{out} has the results of an earlier run ({earlier[0].name}); pass --force to replace them, "
            "or choose another -o"
        )
    for name in names:
        check_writable(out / name, force=True)
    return journal


def _reference(model: str, given, opts: PipelineOptions, hooks: _Hooks):
    """(reference Model, its info): the given file scored on its test images, else a zoo model
    trained on --data (cached)."""
    from edgecnn.train.api import reference_model

    if given is not None:
        info = _reference_info(given, opts)
        hooks.say(f"reference model: {info['weights']}")
        return given, info
    hooks.say(f"reference model: {model} trained on {opts.data} (cached after the first run)")
    return reference_model(
        model,
        opts.data,
        input_size=opts.input_size,
        epochs=opts.epochs,
        batch_size=opts.batch_size,
        device=opts.train_device,
        seed=opts.seed,
        on_step=hooks.on_step,
        on_epoch=hooks.on_epoch,
    )


def _uniform_students(model, ref, original, size, data, opts: PipelineOptions, result, hooks) -> None:
    """The separable / bottleneck students of every layer, each distilled from the reference."""
    from edgecnn.train import DistillOptions, distill, train_options
    from edgecnn.transforms import SwapOptions, convert, saved_model

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
        hooks.say(f"{name}: {fewer:.2f}x fewer MACs than the BN-folded original; distilling")
        train = train_options(
            "distill",
            epochs=opts.distill_epochs,
            batch_size=opts.batch_size,
            device=opts.train_device,
            feature_steps=opts.feature_steps,
            seed=opts.seed,
        )
        distilled = distill(
            ref,
            student,
            data,
            DistillOptions(train=train),
            output=result.out_dir / f"{model}.{name}.safetensors",
            force=True,
            on_step=hooks.on_step,
            on_epoch=hooks.on_epoch,
        )
        top1, before = distilled.student_test_top1, distilled.training.initial_val_top1
        result.variants[name] = Variant(
            saved_model(distilled.model, distilled.recipe, distilled.path, ref.base),
            student.macs_after,
            student.params_after,
            mac_reduction=original.macs_after / student.macs_after,
            test_top1=top1,
            test_set=distilled.test_set,
            initial_val_top1=before,
        )
        hooks.say(f"{name}: test top-1 {top1:.2f}% after distillation (before: {before:.2f}% val)")


def _bench_and_report(model: str, opts: PipelineOptions, result, hooks: _Hooks) -> None:
    """Benchmark every variant's Model in one run (each exported once, compress's exports reused);
    write results.json, results.md and the plot."""
    from edgecnn.bench import BenchOptions, bench, save
    from edgecnn.report.plot import plot
    from edgecnn.report.tables import markdown

    hooks.say("exporting and benchmarking every variant")
    precisions = ("fp32", "int8") if opts.int8 else ("fp32",)
    # rows at compress's baseline too where it is not fp32 (OpenVINO's bf16 default on CPUs with bf16)
    baselines = {v.float_math for v in result.variants.values() if v.float_math}
    bench_opts = BenchOptions(
        runtimes=opts.runtimes,
        precisions=precisions + tuple(sorted(baselines - set(precisions))),
        data=opts.data,
        calib=opts.data or result.reference["data"],
        export_dir=str(result.out_dir / "artifacts"),
        # compress exported each student for its runtime already: those verified artifacts are reused
        reuse_dirs=tuple(str(p) for p in sorted(result.out_dir.glob("compress-*"))),
        min_seconds=opts.seconds,
        min_iters=20,
        warmup_s=0.5,
        memory=opts.memory,
    )
    models = [v.model for v in result.variants.values()]
    result.run = bench(models, bench_opts, on_step=lambda msg: hooks.say(msg))
    original = result.variants["original"]
    for v in result.variants.values():
        if v.runtime:  # the bench's own figure, in the same run as the original's
            v.bench_speedup = _speedup(result.run, original, v)
        v.table_top1 = _table_top1(result.run, v)
    result.run.settings["pipeline"] = {
        "model": model,
        "reference": result.reference,
        "variants": {name: v.to_dict() for name, v in result.variants.items()},
    }
    result.results_json, _ = save(result.run, result.out_dir / "results.json")
    result.table_md = result.out_dir / "results.md"
    result.table_md.write_text(markdown(result.run))
    result.plot = plot([result.run], result.out_dir / "results.png", force=True)


def _given_reference(source: str, opts: PipelineOptions):
    """The reference as a model file (`edgecnn train`'s), or None for a zoo name to train."""
    if not str(source).endswith(".safetensors"):
        return None
    from edgecnn.data.splits import recorded_split
    from edgecnn.errors import BadArgumentError
    from edgecnn.transforms import load_source

    loaded = load_source(source)
    if recorded_split(loaded.recipe) is None and opts.data is None:
        raise BadArgumentError(f"{source} records no training data; give --data with its images")
    if opts.input_size is not None and tuple(opts.input_size) != tuple(loaded.recipe["input_size"]):
        raise BadArgumentError(
            f"{source} was trained at {loaded.recipe['input_size']}; --input-size goes with a zoo name"
        )
    return loaded


def _reference_info(loaded, opts: PipelineOptions) -> dict:
    """What the pipeline reports of a given reference: top-1 on its own test images."""
    from edgecnn.data import Preprocess
    from edgecnn.data.splits import check_classes, splits_for
    from edgecnn.train import evaluate_top1

    size = tuple(loaded.recipe["input_size"])
    preprocess = Preprocess.for_model(loaded.card, input_size=size)
    splits = splits_for(opts.data, preprocess, loaded.recipe, seed=opts.seed)
    check_classes(loaded.recipe.get("class_names"), splits.classes, splits.source, loaded.weights.path)
    return {
        "weights": loaded.weights.path,
        "num_classes": loaded.num_classes,
        "test_top1": evaluate_top1(loaded.module, splits.test),
        "test_set": splits.test_set,
        "input_size": list(size),
        "data": splits.source,
    }


def _table_top1(run, variant: Variant) -> float | None:
    """A variant's top-1 as the table shows it: its fp32 row, PyTorch's where there is one, so the
    summary lines and the table never disagree."""
    from edgecnn.runtime import get_backend, is_baseline

    rows = [
        r
        for r in run.rows
        if r.accuracy and is_baseline(r.precision) and r.source == variant.source and r.batch == 1
    ]
    rows.sort(key=lambda r: get_backend(r.runtime).target is not None)  # the in-memory module first
    return rows[0].accuracy.top1 if rows else None


def _compressed(model, ref, size, opts: PipelineOptions, result, hooks: _Hooks) -> None:
    """One `compress` student per runtime that can plan, each planned on that runtime."""
    from edgecnn.runtime import available, get_backend

    for runtime in opts.runtimes:
        if not (get_backend(runtime).node_profiler and available(runtime)):
            continue
        hooks.say(
            f"compress for {runtime}: {opts.speedup}x faster there, {opts.distill_epochs} epochs distilling"
        )
        r = _compress_within_reach(model, ref, runtime, size, opts, result, hooks)
        if r is None:
            continue
        planned = r.plan.original_ms / r.plan.target_ms
        result.variants[f"compressed-{runtime}"] = Variant(
            r.student,
            r.macs[1],
            r.params[1],
            mac_reduction=r.macs[0] / r.macs[1],
            test_top1=r.top1[1],
            test_set=r.test_set,
            runtime=runtime,
            requested_speedup=opts.speedup,
            planned_speedup=planned,
            measured_speedup=r.measured_speedup,
            predicted_ms=r.plan.predicted_ms,
            baseline=r.baseline_label,
            other_speedup=r.other_speedup,
            other_math=r.other_math or None,
            float_math=r.float_math or None,
        )
        asked = f"asked {opts.speedup}x" + (
            f", planned {planned:.2f}x" if abs(planned - opts.speedup) > 1e-3 else ""
        )
        other = f"; {r.other_speedup:.2f}x with both in {r.other_math}" if r.other_speedup else ""
        hooks.say(
            f"compressed for {runtime}: {r.measured_speedup:.2f}x measured over {r.baseline_label} "
            f"({asked}{other}), "
            f"test top-1 {r.top1[1]:.2f}% vs {r.top1[0]:.2f}%"
        )


# Below this best reachable speed-up a compressed student is not worth making.
WORTH = 1.02


def _compress_within_reach(model, ref, runtime, size, opts: PipelineOptions, result, hooks: _Hooks):
    """compress for `opts.speedup`, or, where that is out of reach on this machine (a small model at
    a small size is bound by dispatch, not compute), for 97% of the best reachable, said out loud: a
    pipeline that has trained its reference should not end there. None when even that is under WORTH."""
    from edgecnn.compress import CompressOptions, compress
    from edgecnn.errors import OutOfReachError

    speedup = opts.speedup
    for _ in range(2):
        co = CompressOptions(
            runtime=runtime,
            speedup=speedup,
            data=opts.data,
            input_size=size,
            distill_epochs=opts.distill_epochs,
            batch_size=opts.batch_size,
            train_device=opts.train_device,
            out_dir=result.out_dir / f"compress-{runtime}",
            force=True,
            measure_seconds=opts.seconds,
            check_seconds=min(CompressOptions.check_seconds, opts.seconds),  # the plan's timings too
            seed=opts.seed,
        )
        try:
            return compress(
                model,
                co,
                loaded=ref,
                on_step=hooks.on_step,
                on_epoch=hooks.on_epoch,
                on_progress=hooks.on_progress,
            )
        except OutOfReachError as e:
            if e.best_speedup < WORTH or speedup != opts.speedup:
                log.warning("no compressed student for %s: %s", runtime, e)
                return None
            speedup = round(0.97 * e.best_speedup, 3)
            hooks.say(
                f"{opts.speedup}x is out of reach on {runtime} here ({e.best_speedup:.2f}x at best): "
                f"compressing for {speedup}x"
            )
    return None


def _speedup(run, original: Variant, variant: Variant) -> float | None:
    """Original median / compressed median on the variant's runtime, from the bench rows at the
    precision compress timed both in (its float math where the runtime says, else fp32)."""
    from edgecnn.runtime import is_baseline

    def at_baseline(row) -> bool:
        return row.precision == variant.float_math if variant.float_math else is_baseline(row.precision)

    ms = {}
    for row in run.rows:
        same = row.runtime == variant.runtime and row.batch == 1
        if same and at_baseline(row) and row.latency:
            for key, v in (("original", original), ("student", variant)):
                if row.source == v.source:
                    ms[key] = row.latency.median_ms
    return ms["original"] / ms["student"] if len(ms) == 2 else None
