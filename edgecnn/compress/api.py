"""`compress`: plan on the runtime, recover the student, export both, and measure them together."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgecnn.compress.options import CompressOptions
from edgecnn.errors import BadArgumentError
from edgecnn.plan import Plan

log = logging.getLogger(__name__)


@dataclass
class CompressResult:
    model: str
    runtime: str
    plan: Plan
    student_path: str
    artifacts: dict[str, str | None]  # "original" / "student" -> the timed artifact (None: torch)
    original_ms: float  # end-to-end, measured in this run
    student_ms: float
    macs: tuple[int, int]  # before, after
    params: tuple[int, int]
    size_bytes: tuple[int | None, int | None]
    top1: tuple[float, float]  # test top-1 before, after
    test_set: str
    distill_epochs: int
    report: str | None = None  # the JSON written beside the student
    refit: list = field(default_factory=list)  # RefitReport per swapped layer (unless --no-refit)
    # int8 layers the plan chose that the student's artifact runs in fp32: without them it failed its
    # check against PyTorch (most harmful first)
    int8_given_back: list[str] = field(default_factory=list)
    student: object = field(default=None, repr=False)  # the student's Model, as its file describes it
    # What original_ms and student_ms are under: the runtime's default float math ("default") or fp32
    # pinned ("fp32"), and what that ran float layers in where the runtime says (OpenVINO: bf16, f32).
    baseline: str = "default"
    float_math: str = ""
    # the same pair under the other baseline, where it differs here, timed in the same rounds
    other_ms: tuple[float, float] | None = None
    other_math: str = ""
    # an int8 plan's rival, export's plain INT8 of the original: its ms in the same rounds, and the
    # top-1 of both int8 artifacts (student, plain) run in the runtime on the same test images
    plain_int8_ms: float | None = None
    int8_top1: tuple[float, float] | None = None
    # the measured speed-up's 90% bootstrap interval over the rounds timed (more where it was wide)
    speedup_interval: tuple[float, float] | None = None
    rounds: int = 0
    # where the plan may prune: the plan, the plan without pruning and uniform pruning at the same
    # request, recovered and scored on the validation images (compress.rival), and which `plan` is
    structure: object = None  # StructureChoice

    @property
    def other_speedup(self) -> float | None:
        """The student's speed-up under the other baseline (both sides in its float math)."""
        return self.other_ms[0] / self.other_ms[1] if self.other_ms else None

    @property
    def baseline_label(self) -> str:
        """What the measured speed-up is over, in words."""
        if not self.float_math:
            return "fp32"
        if self.baseline == "default":
            return f"{self.runtime}'s default, float layers in {self.float_math}"
        return f"float layers pinned to {self.float_math}"

    @property
    def speedup_over_plain_int8(self) -> float | None:
        return self.plain_int8_ms / self.student_ms if self.plain_int8_ms else None

    @property
    def beaten_by_plain_int8(self) -> bool:
        """Plain INT8 is at least as fast, or the student's int8 artifact is over half a point worse."""
        if self.speedup_over_plain_int8 is None or self.int8_top1 is None:
            return False
        return self.speedup_over_plain_int8 <= 1.0 or self.int8_top1[0] < self.int8_top1[1] - 0.5

    @property
    def shipped(self) -> str:
        """The artifact to deploy: the student's, or plain INT8 of the original where that beats it."""
        return "plain_int8" if self.beaten_by_plain_int8 else "student"

    @property
    def steady(self) -> bool:
        """Whether the measured speed-up's interval is within STEADY_WIDTH of it."""
        from edgecnn.bench.latency import STEADY_WIDTH

        if self.speedup_interval is None:
            return True
        lo, hi = self.speedup_interval
        return (hi - lo) / self.measured_speedup <= STEADY_WIDTH

    @property
    def measured_speedup(self) -> float:
        return self.original_ms / self.student_ms

    @property
    def prediction_error(self) -> float:
        """(predicted - measured) / measured of the student's latency, the prediction in the plan's ms."""
        return (self.plan.predicted_ms - self.student_ms) / self.student_ms

    @property
    def predicted_ms_here(self) -> float:
        """The plan's predicted speed-up applied to the original as timed in this measurement: the
        prediction on the same footing as the student's time (a shared machine's speed drifts
        between planning and measuring)."""
        return self.original_ms / self.plan.predicted_speedup

    @property
    def prediction_error_here(self) -> float:
        return (self.predicted_ms_here - self.student_ms) / self.student_ms

    def to_dict(self) -> dict:
        d = asdict(dataclasses.replace(self, student=None, structure=None))
        del d["student"]
        d["plan"] = self.plan.to_dict()
        d["structure"] = self.structure.to_dict() if self.structure else None
        d.update(
            other_speedup=self.other_speedup,
            speedup_over_plain_int8=self.speedup_over_plain_int8,
            beaten_by_plain_int8=self.beaten_by_plain_int8,
            shipped=self.shipped,
            shipped_artifact=self.artifacts.get(self.shipped),
            measured_speedup=self.measured_speedup,
            prediction_error=self.prediction_error,
            predicted_ms_here=self.predicted_ms_here,
            prediction_error_here=self.prediction_error_here,
        )
        return d


def compress(
    model,
    options: CompressOptions | None = None,
    *,
    weights: str | None = None,
    loaded=None,
    on_progress: Callable[[str, int, int], None] | None = None,
    on_step=None,
    on_epoch=None,
) -> CompressResult:
    """Compress `model` for `options.runtime` to the requested budget: a `Model` (a module with its
    card), a model file, or a zoo name (with `weights`, or an already built `loaded` Model)."""
    from edgecnn.compress.measure import artifact_size
    from edgecnn.compress.recovery import calibration_batches
    from edgecnn.compress.rival import recover_best, rivals

    opts = (options or CompressOptions()).validate()
    loaded, card, size, opts = _source(model, weights, loaded, opts)
    out, student_path, opts, journal = _destinations(card, opts)
    progress = on_progress or (lambda stage, done, total: None)
    progress("loading model and data", 0, 1)
    splits, recorded, opts = _data(card, size, loaded, opts)
    loaded = _with_classes(loaded, model if isinstance(model, str) else card.name, weights, splits)
    batches = calibration_batches(splits, opts)
    folded, plan = _plan(loaded, size, batches, opts, progress)
    others = rivals(folded, plan, batches, splits, opts, progress)
    plan, (student, top1, test_set, refits), structure = recover_best(
        loaded, plan, others, size, splits, batches, opts, progress, on_step, on_epoch
    )
    header = {**student.recipe, "class_names": list(splits.classes), "data": recorded}
    header["trained"] = {"compressed_for": opts.runtime, "test_top1": top1[1], "test_set": test_set}
    with journal.writing():  # from here, a kill leaves outputs the next run of this compress replaces
        student_model = _save_student(student.model, header, student_path, loaded, opts)
        original = dataclasses.replace(loaded, path=None)  # its artifacts are named by its card, as planned
        artifacts, given_back = _export(
            *(original, student_model, out, opts, progress, plan),
            calib=splits.source,
            batches=batches,
            check=splits.test,
        )
        timed, int8_top1 = _measure(loaded, student.model, artifacts, size, splits.test, opts, progress)
        result = CompressResult(
            *(card.name, opts.runtime, plan, str(student_path)),
            {k: str(v) if v else None for k, v in artifacts.items()},
            *(timed.original_ms, timed.student_ms),
            (student.macs_before, student.macs_after),
            (student.params_before, student.params_after),
            tuple(artifact_size(artifacts[k]) for k in ("original", "student")),
            *(top1, test_set, opts.distill_epochs),
            refit=refits,
            int8_given_back=given_back,
            student=student_model,
            baseline=opts.baseline,
            int8_top1=int8_top1,
            structure=structure,
            **timed.result_fields(),
        )
        result.report = str(_write_report(result, out))
    return result


def _measure(loaded, student, artifacts, size, test, opts: CompressOptions, progress):
    """(the end-to-end timings, the int8 artifacts' top-1 or None), measured in the runtime."""
    from edgecnn.compress.measure import time_both

    progress(f"timing the original and the student in {opts.runtime}", 0, 1)
    timed = time_both(loaded.module, student, artifacts, (loaded.in_chans, *size), opts)
    return timed, _int8_top1(artifacts, test, opts, progress)


def _int8_top1(artifacts, test, opts: CompressOptions, progress) -> tuple[float, float] | None:
    """Top-1 of the int8 student's artifact and of plain INT8's, run in the runtime, on the test images."""
    from edgecnn.compress.measure import artifact_top1

    if not artifacts.get("plain_int8"):
        return None
    progress(f"test top-1 of both int8 artifacts in {opts.runtime}", 0, 1)
    return tuple(artifact_top1(artifacts[k], test, opts, "int8") for k in ("student", "plain_int8"))


def _with_classes(loaded, name: str, weights, splits):
    """The Model to compress: the model `name` references built with as many outputs as the data has
    classes, or the given one when its classes are the data's."""
    if loaded is None:
        from edgecnn.transforms import load_source

        return load_source(name, weights, num_classes=len(splits.classes))
    if loaded.num_classes != len(splits.classes):
        raise BadArgumentError(
            f"{loaded.card.name} has {loaded.num_classes} classes and {splits.source} has "
            f"{len(splits.classes)}"
        )
    return loaded


def _source(model, weights, loaded, opts: CompressOptions):
    """(the Model when one is given or read from a file, else None; its card; the input size; the
    options with that size when a model file fixes it)."""
    from edgecnn.card import Model
    from edgecnn.transforms import load_source
    from edgecnn.transforms.model_file import reads_model_file
    from edgecnn.zoo import card_for

    if loaded is None and (isinstance(model, Model) or reads_model_file(model, weights)):
        loaded = load_source(model, weights)  # its card: classes, size, and the split it records
    card = loaded.card if loaded is not None else card_for(model)
    size = card.check_input_size(opts.input_size)
    if opts.input_size is None and loaded is not None:  # every artifact at its size
        opts = dataclasses.replace(opts, input_size=size)
    return loaded, card, size, opts


def _destinations(card, opts: CompressOptions):
    """(output folder, student file, options, run journal), every output checked writable before any
    work: nothing is replaced without --force but what an interrupted compress left there. An int8
    plan has a folder of its own, so its report never replaces the fp32 plan's."""
    from edgecnn.artifacts import RunJournal, check_writable

    tag = f"{opts.runtime}{'-int8' if opts.int8 else ''}"
    out = Path(opts.out_dir or Path("export") / card.name / f"compress-{tag}")
    student_path = out / f"{card.name}.compressed-{tag}.safetensors"
    outputs = _outputs(card, student_path, out, opts)
    journal = RunJournal(out, "compress", outputs)
    if journal.resumes() and not opts.force:
        log.info("replacing the outputs an interrupted compress left in %s", out)
        opts = dataclasses.replace(opts, force=True)
    for path in outputs:
        check_writable(path, force=opts.force)
    return out, student_path, opts, journal


def _data(card, size, loaded, opts: CompressOptions):
    """(splits, the split as recorded in the student's file, options with the calibration count):
    the model file's own split when --data names the same images, else --data split afresh."""
    from edgecnn.compress.recovery import calib_count
    from edgecnn.data import Preprocess
    from edgecnn.data.splits import record, splits_for

    preprocess = Preprocess.for_model(card, input_size=size)
    splits = splits_for(opts.data, preprocess, loaded.recipe if loaded is not None else None, seed=opts.seed)
    recorded = record(splits)  # the whole split, before --test-images narrows what is scored here
    if opts.test_images is not None:
        from edgecnn.data.dataset import Subset

        splits.test = Subset(splits.test, range(min(opts.test_images, len(splits.test))), "first")
    splits.train.require_readable("training")  # "none can be read" before any count of them
    splits.test.require_readable("test")
    opts = dataclasses.replace(opts, calib_images=calib_count(opts, len(splits.train)))
    if len(splits.train) < opts.calib_images:
        raise BadArgumentError(
            f"{splits.source} has {len(splits.train)} training images; compress scores candidates on "
            f"--calib-images {opts.calib_images} (give more images or a smaller --calib-images)"
        )
    return splits, recorded, opts


def _save_student(module, header: dict, path: Path, loaded, opts: CompressOptions):
    """The student's file (it says what it was made and scored on, as train's does), and the Model
    exported from memory as that file describes it."""
    from edgecnn.transforms import save_with_recipe, saved_model

    save_with_recipe(module, header, path, force=opts.force)
    return saved_model(module, header, path, loaded.base)


def _plan(loaded, size, batches, opts: CompressOptions, progress) -> tuple[object, Plan]:
    """(the model as the runtime runs it: BN folded, the plan made on it)."""
    from edgecnn.plan import make_plan
    from edgecnn.transforms import convert

    folded = convert(loaded, fold_bn=True, input_size=size).model.eval()
    shape = (loaded.in_chans, *size)
    return folded, make_plan(folded, shape, batches, opts.plan_options(), on_progress=progress)


def _outputs(card, student_path: Path, out: Path, opts: CompressOptions) -> list[Path]:
    """Every file compress writes: the student, its report, and the artifacts with their manifests
    (the original's, the student's, and for an int8 plan plain INT8 of the original)."""
    from edgecnn.export import ExportOptions, planned_paths
    from edgecnn.runtime import get_backend

    paths = [student_path, out / "compress.json"]
    backend = get_backend(opts.runtime)
    if backend.target is not None:
        eo = ExportOptions(
            targets=(backend.target,), out_dir=out, batch=opts.batch, input_size=opts.input_size
        )
        (original,) = planned_paths(card, eo).values()
        # the student's file records its input size: its card is at that size, as export reads it
        student_card = card.at_size(opts.input_size or card.input_size)
        student_eo = dataclasses.replace(eo, precision=opts.precision, input_size=None)
        (student,) = planned_paths(student_card, student_eo, file=student_path).values()
        artifacts = [original, student]
        if opts.int8:  # plain INT8 of the original, the rival an int8 plan is measured against
            artifacts += planned_paths(card, dataclasses.replace(eo, precision="int8")).values()
        for artifact in artifacts:
            paths += [*backend.side_paths(artifact), artifact, artifact.with_name(artifact.name + ".json")]
    return paths


def _export(
    original,
    student,
    out: Path,
    opts: CompressOptions,
    progress,
    plan: Plan,
    *,
    calib=None,
    batches=(),
    check=None,
) -> tuple[dict, list[str]]:
    """The original's (fp32) and the student's (the plan's precision: int8 but for its fp32 layers,
    calibrated on the data's training images) artifacts for the runtime, each verified against
    PyTorch on seeded inputs and on real images (fp32: `check`, the held-out test images); and the
    int8 layers given back to fp32 because the student failed its check without that
    (`quantize_with_accuracy_control`)."""
    from edgecnn.compress.int8 import quantize_with_accuracy_control
    from edgecnn.errors import ExportError
    from edgecnn.export import export
    from edgecnn.runtime import get_backend, is_baseline

    if get_backend(opts.runtime).target is None:  # the runtime runs the modules themselves
        return {"original": None, "student": None}, []
    paths, given_back = {}, []
    for name, source, eo in _export_jobs(original, student, out, opts, plan, calib, check):
        progress(f"exporting the {name.replace('_', ' ')} for {opts.runtime}", 0, 1)
        if name == "student" and opts.int8:
            int8_layers = [layer.name for layer in plan.layers if not is_baseline(layer.precision)]
            target, given_back = quantize_with_accuracy_control(
                source, eo, int8_layers, batches, plan.int8_activations, on_progress=progress
            )
        else:
            (target,) = export(source, eo).targets
        if not target.ok and name == "plain_int8":  # a rival that fails its own check is no rival
            log.warning("plain INT8 of the original failed its check (%s): not compared", target.error)
        elif not target.ok:
            raise ExportError(f"exporting the {name} for {opts.runtime} failed: {target.error}")
        else:
            paths[name] = Path(target.path)
    return paths, given_back


def _export_jobs(original, student, out: Path, opts: CompressOptions, plan: Plan, calib, check) -> list:
    """(name, Model, ExportOptions) of every artifact compress exports."""
    from edgecnn.export import ExportOptions
    from edgecnn.runtime import get_backend

    common = dict(
        targets=(get_backend(opts.runtime).target,),
        out_dir=out,
        batch=opts.batch,
        input_size=opts.input_size,
        force=opts.force,
        verify=opts.verify,
    )
    # an int8 student is checked as `export --calib` checks it (that check picks the layers given back)
    student_eo = ExportOptions(
        **common,
        precision=opts.precision,
        calib=calib if opts.int8 else None,
        calib_size=opts.calib_size,
        int8_fp32_layers=tuple(plan.fp32_layers()),
        check_images=None if opts.int8 else check,
    )
    original_eo = ExportOptions(**common, check_images=check)
    jobs = [("original", original, original_eo), ("student", student, student_eo)]
    if opts.int8:  # the one-call alternative an int8 plan has to beat: export's plain INT8 of the original
        plain = dataclasses.replace(student_eo, int8_fp32_layers=(), check_images=None)
        jobs.append(("plain_int8", original, plain))
    return jobs


def _write_report(result: CompressResult, out: Path) -> Path:
    from edgecnn.artifacts import atomic_output

    path = out / "compress.json"
    with atomic_output(path, force=True) as tmp:
        tmp.write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    return path
