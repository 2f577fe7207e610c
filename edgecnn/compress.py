"""`compress`: a model made faster by a requested factor *on a given runtime*, measured there.

plan (latency table measured on the runtime + error scores on real images + knapsack) -> build the
student from the trained weights with BN kept -> re-estimate BN -> distill -> export for the runtime
(verified against PyTorch) -> time the original and the student in the same run, report predicted
vs measured latency and test top-1 before/after on the same test images.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgecnn.errors import BadArgumentError
from edgecnn.plan import Grid, Plan, PlanOptions
from edgecnn.train.options import USES

log = logging.getLogger(__name__)


CALIB_IMAGES = 64  # training images that score each candidate's error, when the data has them
MIN_CALIB = 8
# The end-to-end timing alternates the two models in blocks this long and takes each one's median
# block: load on a shared machine moves both alike (benchmarks/results/speed_regimes_*.txt).
BLOCK_S = 0.5
DIVERGED_RETRIES = 2  # distillations again from the built student, each at a quarter of the lr


@dataclass
class CompressOptions:
    runtime: str = "onnxruntime"
    speedup: float | None = 2.0
    latency_ms: float | None = None
    # image folder or "digits": calibration, BN re-estimation, distillation, test. None: the split
    # the model file records (the digits for a zoo name)
    data: str | None = None
    calib_images: int | None = None  # images scoring the candidates' errors (None: up to CALIB_IMAGES)
    distill_epochs: int = 2  # 0: plan, build, re-estimate BN and export only
    bn_batches: int = 20  # batches of 64 training images that re-estimate BN statistics
    test_images: int | None = None  # score top-1 on the first N test images (None: all of them)
    # A fine-tune of trained weights: 0.02 (distill's default) sent ResNet-50 students at 64x64 to
    # chance or to an infinite loss; 0.005 took them to within 1 point of the teacher in 2 epochs.
    lr: float = USES["compress"]["lr"]
    batch_size: int = 64  # distillation
    train_device: str | None = None  # where the student distils: cpu, cuda, auto; default: by --device
    input_size: tuple[int, int] | None = None
    device: str = "cpu"
    threads: int | None = None
    batch: int = 1
    use_cache: bool = True
    cache_dir: Path | None = None
    grid: Grid = field(default_factory=Grid)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    out_dir: Path | None = None
    force: bool = False
    measure_seconds: float = 3.0  # per model and round of the end-to-end timing
    measure_rounds: int = 2  # rounds of it, each cut in blocks of BLOCK_S alternating the models
    seed: int = 0
    int8: bool = False  # plan precision per layer too; the student is exported int8 (mixed)
    # least-squares refit of each swapped block's last factor before distilling: measured to help
    # (ResNet-50 2x at 64x64: built 62.4% -> 90.7%, distilled 92.9% -> 94.1% of a 94.5% teacher)
    refit: bool = True
    calib_size: int = 100  # images calibrating the int8 export
    check_seconds: float = 0.4  # the planner's whole-model checks, per model and round
    headroom: float | None = None  # the plan aims this fraction faster than asked (None: its default)
    verify: bool = True  # check both artifacts against PyTorch (off: random weights, speed only)

    @property
    def distill_device(self) -> str:
        """--train-device, else the GPU when the runtime runs on one."""
        return self.train_device or ("cpu" if self.device == "cpu" else "cuda")

    @property
    def precision(self) -> str:
        """The student artifact's precision (the original is always timed in fp32)."""
        return "int8" if self.int8 else "fp32"

    def plan_options(self) -> PlanOptions:
        return PlanOptions(
            runtime=self.runtime,
            speedup=self.speedup,
            latency_ms=self.latency_ms,
            device=self.device,
            threads=self.threads,
            batch=self.batch,
            grid=self.grid,
            include=self.include,
            exclude=self.exclude,
            use_cache=self.use_cache,
            cache_dir=self.cache_dir,
            int8=self.int8,
            check_seconds=self.check_seconds,
            # the prediction is timed as long as the measurement it predicts
            confirm_seconds=self.measure_seconds * max(1, self.measure_rounds),
            headroom=self.headroom,
        )

    def validate(self) -> CompressOptions:
        from edgecnn.runtime import available, get_backend

        backend = get_backend(self.runtime)
        if not available(self.runtime):
            raise BadArgumentError(
                f"{self.runtime} is not installed; install it with: {backend.install_hint}"
            )
        if not self.measure_seconds > 0:  # before the plan's options, whose re-timing it sets
            raise BadArgumentError(f"--duration must be positive, got {self.measure_seconds}")
        self.plan_options().validate()
        if self.calib_size < 1:
            raise BadArgumentError(f"--calib-size must be positive, got {self.calib_size}")
        few = self.calib_images is not None and self.calib_images < MIN_CALIB
        if not self.lr > 0 or self.batch_size < 1:
            raise BadArgumentError(
                f"--lr must be positive and the batch size >= 1, got {self.lr}, {self.batch_size}"
            )
        if self.distill_epochs < 0 or few or self.bn_batches < 0:
            raise BadArgumentError("--distill-epochs must be >= 0, --calib-images >= 8, bn_batches >= 0")
        if self.test_images is not None and self.test_images < 1:
            raise BadArgumentError(f"--test-images must be positive, got {self.test_images}")
        if self.distill_epochs:
            from edgecnn.train.options import resolve_device

            self.train_device = resolve_device(self.distill_device)
        return self


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
        between planning and measuring; ResNet-50 ran 46-57 ms here from one minute to the next)."""
        return self.original_ms / self.plan.predicted_speedup

    @property
    def prediction_error_here(self) -> float:
        return (self.predicted_ms_here - self.student_ms) / self.student_ms

    def to_dict(self) -> dict:
        d = asdict(self)
        d["plan"] = self.plan.to_dict()
        d.update(
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
    from edgecnn.artifacts import check_writable
    from edgecnn.card import Model
    from edgecnn.data import Preprocess
    from edgecnn.data.splits import record, splits_for
    from edgecnn.transforms import load_source
    from edgecnn.zoo import card_for

    opts = (options or CompressOptions()).validate()
    if loaded is None and (isinstance(model, Model) or str(model).endswith(".safetensors")):
        loaded = load_source(model, weights)  # its card: classes, size, and the split it records
    card = loaded.card if loaded is not None else card_for(model)
    model = card.name
    size = card.check_input_size(opts.input_size)
    if opts.input_size is None and loaded is not None:  # every artifact at its size
        opts = dataclasses.replace(opts, input_size=size)
    # An int8 plan has a folder of its own: its report must not replace the fp32 plan's.
    out = Path(
        opts.out_dir or Path("export") / model / f"compress-{opts.runtime}{'-int8' if opts.int8 else ''}"
    )
    student_path = out / f"{model}.compressed-{opts.runtime}{'-int8' if opts.int8 else ''}.safetensors"
    for path in _outputs(card, student_path, out, opts):  # nothing is replaced without --force
        check_writable(path, force=opts.force)
    progress = on_progress or (lambda stage, done, total: None)
    progress("loading model and data", 0, 1)
    preprocess = Preprocess.for_model(card, input_size=size)
    splits = splits_for(opts.data, preprocess, loaded.recipe if loaded is not None else None, seed=opts.seed)

    recorded = record(splits)  # the whole split, before --test-images narrows what is scored here
    if opts.test_images is not None:
        from edgecnn.data.dataset import Subset

        splits.test = Subset(splits.test, range(min(opts.test_images, len(splits.test))), "first")
    opts = dataclasses.replace(opts, calib_images=_calib_count(opts, len(splits.train)))
    if len(splits.train) < opts.calib_images:
        raise BadArgumentError(
            f"{splits.source} has {len(splits.train)} training images; compress scores candidates on "
            f"--calib-images {opts.calib_images} (give more images or a smaller --calib-images)"
        )
    # The classifier has as many outputs as the data has classes (trained weights must match).
    if loaded is None:
        loaded = load_source(model, weights, num_classes=len(splits.classes))
    elif loaded.num_classes != len(splits.classes):
        raise BadArgumentError(
            f"{model} has {loaded.num_classes} classes and {splits.source} has {len(splits.classes)}"
        )
    batches = _calibration(splits, opts)
    plan = _plan(loaded, size, batches, opts, progress)
    student, top1, test_set, refits = _recover(
        loaded, plan, size, splits, batches, opts, progress, on_step, on_epoch
    )
    from edgecnn.artifacts import sha256_file
    from edgecnn.card import WeightsInfo
    from edgecnn.transforms import card_of, save_with_recipe

    # the student's file says what it was made and scored on, as train's does
    header = {**student.recipe, "class_names": list(splits.classes), "data": recorded}
    header["trained"] = {"compressed_for": opts.runtime, "test_top1": top1[1], "test_set": test_set}
    save_with_recipe(student.model, header, student_path, force=opts.force)
    # exported from memory, as the file just written describes it
    weights = WeightsInfo("converted", str(student_path.resolve()), sha256_file(student_path), "compress")
    student_model = Model(student.model, card_of(header), weights, loaded.base, header, str(student_path))
    original = dataclasses.replace(loaded, path=None)  # its artifacts are named by its card, as planned
    artifacts, given_back = _export(
        original,
        student_model,
        out,
        opts,
        progress,
        plan,
        calib=splits.source,
        batches=batches,
    )
    progress(f"timing the original and the student in {opts.runtime}", 0, 1)
    original_ms, student_ms = _time_both(
        loaded.module, student.model, artifacts, (loaded.in_chans, *size), opts
    )
    result = CompressResult(
        model,
        opts.runtime,
        plan,
        str(student_path),
        {k: str(v) if v else None for k, v in artifacts.items()},
        original_ms,
        student_ms,
        (student.macs_before, student.macs_after),
        (student.params_before, student.params_after),
        tuple(_size(artifacts[k]) for k in ("original", "student")),
        top1,
        test_set,
        opts.distill_epochs,
        refit=refits,
        int8_given_back=given_back,
    )
    result.report = str(_write_report(result, out))
    return result


def _calib_count(opts: CompressOptions, available: int) -> int:
    """--calib-images, else up to CALIB_IMAGES (a small folder scores on what it has)."""
    return opts.calib_images or max(MIN_CALIB, min(CALIB_IMAGES, available))


def _calibration(splits, opts: CompressOptions) -> list:
    """The seeded `calib_images` training images, in batches of 16: error scores and refit."""
    import numpy as np

    from edgecnn.data.dataset import Subset

    count = _calib_count(opts, len(splits.train))
    order = np.random.default_rng(opts.seed).permutation(len(splits.train))[:count]
    return [x for x, _ in Subset(splits.train, order, "calib").batches(16)]


def _plan(loaded, size, batches, opts: CompressOptions, progress) -> Plan:
    from edgecnn.plan import make_plan
    from edgecnn.transforms import convert

    folded = convert(loaded, fold_bn=True, input_size=size).model.eval()  # what the runtime runs
    return make_plan(folded, (loaded.in_chans, *size), batches, opts.plan_options(), on_progress=progress)


def _recover(loaded, plan: Plan, size, splits, batches, opts: CompressOptions, progress, on_step, on_epoch):
    """The student (BN kept) built from the plan, refit when asked, BN re-estimated, distilled when
    asked: (ConvertResult, (teacher top-1, student top-1), test set description, refit reports)."""
    from edgecnn.errors import DivergedError
    from edgecnn.train import DistillOptions, distill, evaluate_top1, train_options
    from edgecnn.train.distillation import recalibrate_bn
    from edgecnn.transforms import convert_exact
    from edgecnn.transforms.refit import refit

    progress("building the student", 0, 1)
    student = convert_exact(loaded, plan.transforms(), input_size=size, seed=opts.seed)
    swapped = [layer.name for layer in plan.layers if layer.kind != "keep"]
    if opts.refit:
        progress("refitting the swapped layers on the calibration images", 0, 1)
    reports = refit(student.model, loaded.module, swapped, batches) if opts.refit else []
    test_set = f"{len(splits.test)} images from {splits.test.source}"
    if opts.distill_epochs == 0:
        recalibrate_bn(student.model, splits.train, batches=opts.bn_batches, seed=opts.seed)
        student.model.eval()
        progress(f"test top-1 on {test_set}", 0, 1)
        top1 = (evaluate_top1(loaded.module, splits.test), evaluate_top1(student.model, splits.test))
        return student, top1, test_set, reports
    train = train_options(
        "compress",
        epochs=opts.distill_epochs,
        batch_size=opts.batch_size,
        lr=opts.lr,
        seed=opts.seed,
        device=opts.distill_device,
    )
    start = copy.deepcopy(student.model.state_dict())
    for attempt in range(DIVERGED_RETRIES + 1):
        options = DistillOptions(train=train, bn_batches=opts.bn_batches)
        try:
            result = distill(
                loaded, student, splits.source, options, splits=splits, on_step=on_step, on_epoch=on_epoch
            )
            break
        except DivergedError as e:
            if attempt == DIVERGED_RETRIES:
                raise
            log.warning("%s: distilling again from the built student at --lr %g", e, train.lr / 4)
            student.model.load_state_dict(start)
            train = dataclasses.replace(train, lr=train.lr / 4)
    return student, (result.teacher_test_top1, result.student_test_top1), result.test_set, reports


def _outputs(card, student_path: Path, out: Path, opts: CompressOptions) -> list[Path]:
    """Every file compress writes: the student, its report, and both artifacts with their manifests."""
    from edgecnn.export import ExportOptions, planned_paths
    from edgecnn.runtime import file_label, get_backend

    paths = [student_path, out / "compress.json"]
    backend = get_backend(opts.runtime)
    if backend.target is not None:
        eo = ExportOptions(
            targets=(backend.target,), out_dir=out, batch=opts.batch, input_size=opts.input_size
        )
        (original,) = planned_paths(card, eo).values()
        # The student's recipe holds the input size, so its name has no size label (as export names it).
        batch = f".b{opts.batch}" if opts.batch != 1 else ""
        label = file_label(opts.precision, backend.int8_scheme("auto"))
        stem = student_path.name.removesuffix(".safetensors")
        student = out / f"{stem}{batch}{label}{backend.suffixes[0]}"
        for artifact in (original, student):
            paths += [*backend.files(artifact), artifact.with_name(artifact.name + ".json")]
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
) -> tuple[dict, list[str]]:
    """The original's (fp32) and the student's (the plan's precision: int8 but for its fp32 layers,
    calibrated on the data's training images, checked on images held out from them) artifacts for
    the runtime, each verified against PyTorch, and the int8 layers given back to fp32 because the
    student failed its check without that (`_give_back`)."""
    from edgecnn.errors import ExportError
    from edgecnn.export import ExportOptions, export
    from edgecnn.runtime import get_backend

    backend = get_backend(opts.runtime)
    if backend.target is None:  # the runtime runs the modules themselves
        return {"original": None, "student": None}, []
    common = dict(
        targets=(backend.target,),
        out_dir=out,
        batch=opts.batch,
        input_size=opts.input_size,
        force=opts.force,
        verify=opts.verify,
    )
    student_eo = ExportOptions(
        **common,
        precision=opts.precision,
        calib=calib if opts.int8 else None,
        calib_size=opts.calib_size,
        int8_fp32_layers=tuple(plan.fp32_layers()),
    )
    jobs = (("original", original, ExportOptions(**common)), ("student", student, student_eo))
    paths, given_back = {}, []
    for name, source, eo in jobs:
        progress(f"exporting the {name} for {opts.runtime}", 0, 1)
        (target,) = export(source, eo).targets
        if name == "student" and opts.int8 and _failed_on_images(target):
            target, given_back = _give_back(target, source, eo, plan, batches, progress)
        if not target.ok:
            raise ExportError(f"exporting the {name} for {opts.runtime} failed: {target.error}")
        paths[name] = Path(target.path)
    return paths, given_back


def _failed_on_images(target) -> bool:
    """Whether an export failed only its check on real images (what more fp32 layers can fix)."""
    failed = [p for p in target.parity if not p.passed]
    return target.status == "verify failed" and all(p.inputs.startswith("images") for p in failed)


def _give_back(first, source, eo, plan: Plan, batches, progress):
    """Export the int8 student again with its most harmful int8 layers (`int8_sensitivity`) in fp32,
    1, 2, 4, ... of them, until it passes its check against PyTorch: (target, layers given back).
    The end-to-end timing after it measures what they cost."""
    from edgecnn.export import export
    from edgecnn.plan.sensitivity import int8_sensitivity
    from edgecnn.runtime import is_baseline

    int8_layers = [layer.name for layer in plan.layers if not is_baseline(layer.precision)]
    progress("ranking the int8 layers by how far they move the logits", 0, 1)
    sensitivity = int8_sensitivity(source.module, int8_layers, batches, plan.int8_activations)
    ranked = [name for name, _ in sensitivity]
    target, k = first, 1
    while k <= len(ranked):
        log.warning(
            "the int8 student failed its check against PyTorch (%s): exporting it again with the %d "
            "int8 layers that move its logits most in fp32",
            target.error,
            k,
        )
        progress(f"exporting the student with {k} more layers in fp32", 0, 1)
        back = ranked[:k]
        (target,) = export(
            source, dataclasses.replace(eo, int8_fp32_layers=(*eo.int8_fp32_layers, *back))
        ).targets
        if not _failed_on_images(target):
            return target, back
        k = len(ranked) if k < len(ranked) < 2 * k else 2 * k
    return target, []


def _time_both(original, student, artifacts, chw, opts: CompressOptions) -> tuple[float, float]:
    """Each one's typical latency, timed in alternating blocks of about BLOCK_S seconds."""
    import numpy as np

    from edgecnn.bench.latency import time_paired
    from edgecnn.runtime import get_backend, get_runner

    backend = get_backend(opts.runtime)
    x = np.random.default_rng(0).standard_normal((opts.batch, *chw)).astype(np.float32)
    runners = [
        get_runner(
            opts.runtime,
            artifacts[name] or module,
            device=opts.device,
            threads=opts.threads,
            **backend.options_for(precision),
        )
        for name, module, precision in (("original", original, "fp32"), ("student", student, opts.precision))
    ]
    rounds = max(1, opts.measure_rounds) * max(1, math.ceil(opts.measure_seconds / BLOCK_S))
    block_s = opts.measure_seconds * max(1, opts.measure_rounds) / rounds
    fns = [lambda r=runner: r.run(x) for runner in runners]
    times = time_paired(fns, batch=opts.batch, rounds=rounds, block_s=block_s)
    return times.typical_ms(0), times.typical_ms(1)


def _size(path) -> int | None:
    from edgecnn.runtime import backend_for

    return sum(p.stat().st_size for p in backend_for(path).files(path)) if path else None


def _write_report(result: CompressResult, out: Path) -> Path:
    from edgecnn.artifacts import atomic_output

    path = out / "compress.json"
    with atomic_output(path, force=True) as tmp:
        tmp.write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    return path
