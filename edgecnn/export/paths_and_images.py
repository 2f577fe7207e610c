"""Everything `export` settles before it builds a target: the model, paths, data and reference outputs.

`planned_paths` is public and pure (no model is built), so `bench` can find an export's artifacts
without making them. `prepare` returns an `ExportJob`: once it exists every check has passed and
nothing has been written yet.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecnn.artifacts import RunJournal, check_writable
from edgecnn.errors import BadArgumentError, OutOfMemoryError, is_out_of_memory
from edgecnn.export.options import DEFAULT_CALIBRATION, ExportOptions
from edgecnn.runtime import file_label, get_precision, get_target

log = logging.getLogger(__name__)


def planned_paths(
    source, options: ExportOptions, *, transforms=(), plan_id: str = "", file: str | Path | None = None
) -> dict[str, Path]:
    """Where `export` writes each target's artifact, known without building anything.

    source: a `Model`, a `Card`, a zoo name or a model file; `file`: the model file a `Card` will be
    saved as (a student not written yet), which names its artifacts. The name records what makes
    artifacts differ: transforms applied at export (with `plan_id`, a digest of their per-layer
    ranks, so rank 2 and rank 3 do not collide), a non-default input size, the batch (static N or
    dynamic), the precision and a non-default calibration method. The folder: `options.out_dir`,
    else beside a model file, else export/<model>/.
    """
    card, known = _card_and_file(source)
    file = file or known
    stem = Path(file).name.removesuffix(".safetensors") if file else card.name
    opts = options
    default_size = tuple(card.input_size)
    size = tuple(opts.input_size or default_size)
    if transforms:
        stem += "." + "+".join(transforms) + (f"-{plan_id}" if plan_id else "")
    if size != default_size:
        stem += f".{size[0]}x{size[1]}"
    stem += ".dynbatch" if opts.dynamic_batch else (f".b{opts.batch}" if opts.batch != 1 else "")
    # a model file's artifacts go beside it; a zoo model's (or a graph's) to export/<model>/
    beside = Path(file).parent if file and str(file).endswith(".safetensors") else None
    out_dir = Path(opts.out_dir or beside or Path("export") / card.name)
    calibrated = get_precision(opts.precision).calibrated and opts.calib_method != DEFAULT_CALIBRATION
    method = f"-{opts.calib_method}" if calibrated else ""
    return {
        t: out_dir
        / f"{stem}{file_label(opts.precision, opts.activations_for(t))}{method}{get_target(t).suffixes[0]}"
        for t in opts.targets
    }


def _card_and_file(source):
    """(card, the model file it names or None) of a Model, a Card, a model file or a zoo name, building
    nothing."""
    from edgecnn.card import Card, Model

    if isinstance(source, Model):
        return source.card, source.path
    if isinstance(source, Card):
        return source, None
    if str(source).endswith(".safetensors"):
        from edgecnn.transforms.model_file import card_of, read_recipe

        return card_of(read_recipe(source)), str(source)
    from edgecnn.zoo import card_for

    return card_for(source), None


@dataclass
class ExportJob:
    """What every target's build and check share, prepared once."""

    options: ExportOptions
    loaded: object  # Model
    model: object  # the module exported (converted when `convert` was given)
    size: tuple[int, int]
    transforms: list[str]  # all transforms in the model: the converted file's and those applied now
    preprocess: object
    finals: dict[str, Path]  # target -> published path
    calibration: object | None  # dataset
    journal: RunJournal | None = None  # the outputs this export writes, while it writes them
    seeded: list[np.ndarray] = field(default_factory=list)
    real: list[np.ndarray] = field(default_factory=list)
    reference: dict[str, np.ndarray] = field(default_factory=dict)  # "seeded"/"real" -> reference logits
    # What the artifacts are checked against, and the graph's I/O names (an ONNX file brings its own)
    reference_name: str = "PyTorch"
    input_name: str = "input"
    output_name: str = "logits"
    preprocessing_known: bool = True  # False: an ONNX file exported without --mean / --std
    reference_runner: object = None  # one already open for the reference (an ONNX file's session)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.options.batch, self.loaded.in_chans, *self.size)

    @property
    def out_dir(self) -> Path:
        return next(iter(self.finals.values())).parent

    @property
    def stem(self) -> str:
        first = next(iter(self.finals.values()))
        return first.name.removesuffix(first.suffix)


def publish_paths(finals: dict[str, Path]) -> list[Path]:
    """Every file the targets publish: each artifact, its side files and its manifest."""
    from edgecnn.export.manifest import manifest_path
    from edgecnn.runtime import get_target

    return [
        p
        for target, final in finals.items()
        for p in (*get_target(target).side_paths(final), final, manifest_path(final))
    ]


def prepare(opts: ExportOptions, *, loaded, convert, on_step) -> ExportJob:
    """Build (or take) the model, apply `convert`, check paths and data, run the PyTorch reference."""
    from edgecnn.data import Preprocess

    model = loaded.module
    transforms = [t["name"] for t in (loaded.recipe or {}).get("transforms", [])]
    size = loaded.card.check_input_size(opts.input_size)
    applied: list[str] = []
    plan_id = ""  # a digest of the export-time transforms' recipes: their per-layer ranks
    if convert:
        from edgecnn.transforms import convert as run_convert

        on_step("converting")
        converted = run_convert(loaded, input_size=size, **convert)
        model, applied = converted.model, [r.transform for r in converted.reports]
        transforms += applied
        recipes = json.dumps([r.recipe for r in converted.reports], sort_keys=True, default=str)
        plan_id = hashlib.sha256(recipes.encode()).hexdigest()[:6]
    finals = planned_paths(loaded, opts, transforms=applied, plan_id=plan_id)
    journal = RunJournal(next(iter(finals.values())).parent, "export", publish_paths(finals))
    if journal.resumes() and not opts.force:  # what an interrupted export left: replaced
        log.info("replacing the outputs an interrupted export left in %s", journal.folder)
        opts = dataclasses.replace(opts, force=True)
    for path in finals.values():
        check_writable(path, force=opts.force)
    if opts.batch > 1:  # before the reference allocates it
        from edgecnn.analysis import analyze, check_batch_fits

        stats = analyze(model, size, in_chans=loaded.in_chans, name=loaded.card.name)
        check_batch_fits(stats, opts.batch, "try a smaller --batch or --input-size")
    preprocess = Preprocess.for_model(loaded.card, input_size=size)
    calibration, check_set = image_sets(opts, preprocess, loaded.recipe)
    job = ExportJob(opts, loaded, model, size, transforms, preprocess, finals, calibration, journal)
    return add_checks(job, check_set, on_step)


def add_checks(job: ExportJob, check_set, on_step) -> ExportJob:
    """The job's seeded inputs, its real check images from `check_set`, and the reference's outputs
    on both (when verifying)."""
    opts = job.options
    rng = np.random.default_rng(opts.seed)
    n_seeded = max(1, opts.seeded_checks // opts.batch)
    job.seeded = [rng.standard_normal(job.shape).astype(np.float32) for _ in range(n_seeded)]
    if opts.verify:
        if check_set:
            job.real = [x for x, _ in check_set.batches(opts.batch, limit=opts.check_size, drop_last=True)]
        on_step(f"running the reference: {job.reference_name}")
        job.reference = _reference(job)
    job.reference_runner = None  # not held while the targets build
    return job


def image_sets(opts: ExportOptions, preprocess, recipe: dict | None = None):
    """(calibration set or None, real check set or None): never the same images. A `--calib` that
    names the images a model file records (its default, `recorded_calib`) calibrates on that split's
    training images and checks on its test images."""
    from edgecnn.data import DIGITS, open_dataset
    from edgecnn.data.dataset import Subset
    from edgecnn.data.splits import load_splits, recorded_split

    calib = check = None
    split = recorded_split(recipe)
    if opts.calib:
        own = split is not None and split.same_data(opts.calib)
        splits = load_splits(split, preprocess, recorded=True) if own else None
        full = splits.train if own else open_dataset(opts.calib, preprocess, split="train")
        order = np.random.default_rng(opts.seed).permutation(len(full))
        calib = Subset(full, order[: opts.calib_size], "calib")
        calib.require_readable("calibration")
        if opts.data is None:
            if own or opts.calib == DIGITS:
                check = splits.test if own else open_dataset(DIGITS, preprocess, split="test")
            else:
                held_out = order[opts.calib_size : opts.calib_size + opts.check_size]
                check = Subset(full, held_out, "held-out") if len(held_out) else None
                if check is None:
                    log.warning(
                        "%s has no images beyond the %d used for calibration: parity uses seeded inputs only",
                        opts.calib,
                        opts.calib_size,
                    )
    if opts.data:
        check = open_dataset(opts.data, preprocess, split="test")
    return calib, opts.check_images if opts.check_images is not None else check


def recorded_calib(source, opts: ExportOptions) -> ExportOptions:
    """`opts` with `--calib` defaulting, for a calibrated precision, to the images the model file
    `source` (a path or a Model) records training on, where they are on this machine."""
    from edgecnn.card import Model
    from edgecnn.data import DIGITS
    from edgecnn.data.splits import recorded_split

    if opts.calib or not get_precision(opts.precision).calibrated:
        return opts
    if isinstance(source, Model):
        recipe = source.recipe
    elif str(source).endswith(".safetensors") and Path(source).is_file():
        from edgecnn.transforms.model_file import read_recipe

        recipe = read_recipe(source)
    else:
        return opts
    split = recorded_split(recipe)
    if split is None or not (split.data == DIGITS or Path(split.data).exists()):
        return opts
    log.info("calibrating on the training images %s records: %s", Path(str(source)).name, split.data)
    return dataclasses.replace(opts, calib=split.data)


def _reference(job: ExportJob) -> dict[str, np.ndarray]:
    from edgecnn.export.parity import run_all
    from edgecnn.runtime import backend_for, get_runner

    runner = job.reference_runner or get_runner(backend_for(job.model).runtime, job.model)
    try:
        reference = {"seeded": run_all(runner, job.seeded).astype(np.float64)}
    except RuntimeError as e:
        if is_out_of_memory(e):
            raise OutOfMemoryError(
                f"out of memory running {job.loaded.card.name} at batch {job.shape[0]}; "
                "try a smaller --batch or --input-size"
            ) from None
        raise BadArgumentError(
            f"{job.loaded.card.name} cannot run at {job.size[0]}x{job.size[1]}: {str(e).splitlines()[0]}"
        ) from None
    if job.real:
        reference["real"] = run_all(runner, job.real).astype(np.float64)
    return reference
