"""`bench`: latency, memory and accuracy of models and artifacts across runtimes, as one BenchRun.

A zoo name (or converted .safetensors) is benchmarked in PyTorch eager and, for the other runtimes,
through the artifacts `export` makes (reused from `export/<model>/` when they exist). An artifact
file is benchmarked in its own runtime. A runtime that is missing or fails gives a row with the error
and an install hint, never a crash.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecnn.bench.schema import BenchRow, BenchRun
from edgecnn.card import check_mean_std, mean_std_problem
from edgecnn.errors import BadArgumentError, EdgeCNNError, UnknownNameError
from edgecnn.runtime import (
    AUTO_INT8,
    artifact_suffixes,
    available,
    backend_for,
    check_int8_activations,
    get_backend,
    get_precision,
    get_runner,
    precision_tag,
)

log = logging.getLogger(__name__)


@dataclass
class BenchOptions:
    runtimes: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
    precisions: tuple[str, ...] = ("fp32",)
    device: str = "cpu"
    batches: tuple[int, ...] = (1,)
    threads: int | None = None
    data: str | None = None  # image folder or "digits" for top-1/top-5
    accuracy: bool = True  # without `data`: score model files on the test split they record
    data_limit: int | None = None
    calib: str | None = None  # for int8 artifacts made on the fly
    calib_size: int = 100  # calibration images (export's --calib-size)
    int8_activations: str = AUTO_INT8  # each runtime's fast scheme; "s8" / "u8" force one
    weights: str | None = None
    num_classes: int | None = None  # for --weights of another class count than the model's default
    in_chans: int | None = None
    input_size: tuple[int, int] | None = None
    warmup_s: float = 1.0
    min_iters: int = 30
    min_seconds: float = 3.0
    memory: bool = True
    hint: str = "latency"  # OpenVINO performance hint
    compile: bool = False  # torch.compile for the torch runtime
    cuda_graph: bool = False  # the torch runtime on CUDA: replay the forward from a captured CUDA graph
    export_dir: str | None = None
    # preprocessing of a graph that records none (an ONNX / IR file without edgecnn's manifest)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    reuse_dirs: tuple[str, ...] = ()  # folders whose verified exports of the same weights are reused
    verify: bool = True  # verify artifacts made on the fly (off: random-weight int8 checks are moot)

    def validate(self) -> BenchOptions:
        if self.calib_size < 1:
            raise BadArgumentError(f"--calib-size must be positive, got {self.calib_size}")
        check_mean_std(self.mean, self.std)
        for r in self.runtimes:
            get_backend(r)
        for p in self.precisions:
            if get_precision(p).calibrated and not self.calib:
                raise BadArgumentError(
                    f"--precision {p} needs --calib DIR or --calib digits to build {p} artifacts"
                )
        for r in self.runtimes:  # a scheme a runtime cannot load is an error before any work
            if any(get_precision(p).calibrated for p in self.precisions if p in get_backend(r).precisions):
                get_backend(r).int8_scheme(self.int8_activations)
        check_int8_activations(self.int8_activations)
        if self.device not in ("cpu", "cuda"):
            raise UnknownNameError("device", self.device, ("cpu", "cuda"))
        if self.cuda_graph and self.device != "cuda":
            raise BadArgumentError("--cuda-graph needs --device cuda")
        if not self.batches or min(self.batches) < 1:
            raise BadArgumentError("--batch needs positive sizes, e.g. --batch 1,8,32")
        if self.threads is not None and self.threads < 1:
            raise BadArgumentError(f"--threads must be >= 1, got {self.threads}")
        if self.hint not in ("latency", "throughput"):
            raise UnknownNameError("hint", self.hint, ("latency", "throughput"))
        if self.data:  # before any work: a folder that is missing, empty or unlabelled
            from edgecnn.data import DIGITS, open_dataset

            if str(self.data) != DIGITS and not open_dataset(self.data, None, split="test").classes:
                raise BadArgumentError(
                    f"{self.data} has no labels, so top-1 cannot be scored: give one subfolder per class"
                )
        return self


def not_measured(opts: BenchOptions) -> list[tuple[str, str]]:
    """(runtime, precision) pairs of the request that the runtime cannot run but another requested
    runtime can (eager PyTorch and int8): left out of the table, and named under it. A pair no
    requested runtime runs becomes an error row instead: nothing asked for is silently dropped."""
    pairs = []
    for runtime in opts.runtimes:
        for precision in opts.precisions:
            others = [r for r in opts.runtimes if precision in get_backend(r).precisions_on(opts.device)]
            if precision not in get_backend(runtime).precisions_on(opts.device) and others:
                pairs.append((runtime, precision))
    return pairs


def _scheme(backend, precision: str, opts: BenchOptions) -> str | None:
    """The int8 activation scheme of `backend`'s `precision` artifacts; None for other precisions."""
    return backend.int8_scheme(opts.int8_activations) if get_precision(precision).calibrated else None


def _is_artifact(item: str) -> bool:
    return Path(item).suffix.lower() in artifact_suffixes()


def _file_size(path: Path) -> int:
    return sum(p.stat().st_size for p in backend_for(path).files(path) if p.exists())


BENCH_DIR = "bench"  # bench's own artifacts, beside (never over) what `export` wrote


class _Job:
    """One row to measure: how to make the runner, and what the row says about it."""

    def __init__(
        self, row: BenchRow, make_runner: Callable, mem_job: dict | None, preprocess, input_chw, recipe=None
    ):
        self.row, self.make_runner, self.mem_job = row, make_runner, mem_job
        self.preprocess, self.input_chw = preprocess, input_chw
        self.recipe = recipe  # the model file's header: its classes and recorded test split


def _memory_source(item, loaded, opts: BenchOptions) -> dict | None:
    """How the memory probe's own process rebuilds the module: by name or file; None for a `Model`
    handed in from Python and not read from a file (its row has no memory figure)."""
    from edgecnn.card import Model
    from edgecnn.zoo.external import trust_state

    trust = trust_state()  # the builders this process may import, the probe's process may too
    if not isinstance(item, Model):
        return {"source": item, "weights": opts.weights, "trust": trust}
    return {"source": loaded.path, "weights": None, "trust": trust} if loaded.path else None


def _jobs_for_source(item, opts: BenchOptions, step) -> list[_Job]:
    from edgecnn.analysis import analyze
    from edgecnn.data import Preprocess
    from edgecnn.transforms import load_source

    loaded = load_source(item, opts.weights, opts.num_classes, opts.in_chans)
    size = loaded.card.check_input_size(opts.input_size)
    stats = analyze(loaded.module, size, in_chans=loaded.in_chans, name=loaded.card.name)
    too_big = {b: _too_big(stats, b) for b in opts.batches}
    preprocess = Preprocess.for_model(loaded.card, input_size=size)
    if opts.data or (opts.accuracy and (loaded.recipe or {}).get("data")):
        from edgecnn.data.splits import held_out_images

        test = held_out_images(opts.data, preprocess, loaded.recipe)  # other classes: one line now
        if test is not None:
            test.require_readable("test")
    name = Path(loaded.path).name.removesuffix(".safetensors") if loaded.path else loaded.card.name
    base = dict(
        model=loaded.card.name,
        device=opts.device,
        threads=opts.threads,
        params=stats.params,
        macs=stats.macs,
        activation_bytes=stats.activation_bytes_fp32,
    )
    chw = (loaded.in_chans, *size)
    jobs = []
    for runtime in opts.runtimes:
        backend = get_backend(runtime)
        for precision in opts.precisions:
            label = precision_tag(precision, _scheme(backend, precision, opts))
            variant = f"{name} {label}" if loaded.path else label
            if (runtime, precision) in not_measured(opts):
                continue  # another requested runtime measures it; the table says which were not
            for b in opts.batches:
                row = BenchRow(
                    variant=variant, runtime=runtime, precision=precision, batch=b, source=name, **base
                )
                runs = backend.precisions_on(opts.device)
                if too_big[b] is not None:  # before any allocation
                    row.error = too_big[b]
                    jobs.append(_Job(row, None, None, preprocess, None))
                elif precision not in runs:  # no requested runtime runs it: a row that says so
                    row.error = (
                        f"{runtime} does not run {precision} on {opts.device} (it runs {', '.join(runs)})"
                    )
                    jobs.append(_Job(row, None, None, preprocess, None))
                elif backend.target is None:  # runs the in-memory module: nothing to export
                    source = _memory_source(item, loaded, opts)
                    mem = {"runtime": runtime, "artifact": None, "source": source} if source else None
                    jobs.append(_Job(row, lambda m=loaded.module: m, mem, preprocess, chw, loaded.recipe))
                else:
                    jobs.append(_artifact_job(row, item, loaded, opts, preprocess, chw, step))
    return jobs


def _too_big(stats, batch: int) -> str | None:
    """Why `batch` cannot fit this machine's memory (None when it may): that batch's rows say so."""
    from edgecnn.analysis import check_batch_fits
    from edgecnn.errors import OutOfMemoryError

    try:
        check_batch_fits(stats, batch, "try a smaller --batch")
    except OutOfMemoryError as e:
        return str(e)
    return None


def _artifact_job(row: BenchRow, item, loaded, opts: BenchOptions, preprocess, chw, step) -> _Job:
    """The row's artifact, exported unless an export of the same weights is already there."""
    from edgecnn.export import ExportOptions

    backend = get_backend(row.runtime)
    if not available(row.runtime):
        row.error, row.hint = f"{row.runtime} is not installed", backend.install_hint
        return _Job(row, None, None, preprocess, None)
    eo = ExportOptions(
        targets=(backend.target,),
        precision=row.precision,
        batch=row.batch,
        input_size=opts.input_size,
        calib=opts.calib,
        calib_size=opts.calib_size,
        out_dir=opts.export_dir,
        check_size=32,
        int8_activations=_scheme(backend, row.precision, opts) or AUTO_INT8,
        verify=opts.verify,
    )
    try:
        artifact = _existing_or_export(item, eo, loaded, step, opts.reuse_dirs)
    except EdgeCNNError as e:
        row.error = str(e)
        return _Job(row, None, None, preprocess, None)
    row.artifact, row.file_size_bytes = str(artifact), _file_size(artifact)
    mem = {"runtime": row.runtime, "artifact": str(artifact)}
    return _Job(row, lambda a=artifact: a, mem, preprocess, chw, loaded.recipe)


def _existing_or_export(item, eo, loaded, step, reuse_dirs=()) -> Path:
    """The artifact `export` would write (in the export folder or one of `reuse_dirs`, e.g. where
    compress exported its student), or bench's own copy of it, reused only when its manifest proves
    the same weights (random weights never match: every row of a run must measure the same model).
    What bench makes goes to a `bench/` folder beside the exports, the only files it replaces: a
    user's `export` output is never overwritten by a bench with other weights."""
    import dataclasses

    from edgecnn.export import check_files, export, planned_paths, read_manifest

    (path,) = planned_paths(loaded, eo).values()
    own_eo = dataclasses.replace(eo, out_dir=str(path.parent / BENCH_DIR), force=True)
    (own,) = planned_paths(loaded, own_eo).values()
    sha = loaded.weights.sha256
    for candidate in (path, own, *(Path(d) / path.name for d in reuse_dirs)):
        if candidate.exists() and sha and read_manifest(candidate).get("weights", {}).get("sha256") == sha:
            problem = check_files(candidate)
            if problem is None:
                return candidate
            log.warning("not reusing %s: %s", candidate, problem)
    shown = Path(loaded.path).name if loaded.path else loaded.card.name
    step(f"exporting {shown} for {eo.targets[0]} {eo.precision} batch {eo.batch}")
    result = export(loaded, own_eo, loaded=loaded)
    (target,) = result.targets
    if not target.ok:
        raise EdgeCNNError(f"export failed: {target.error}")
    return Path(target.path)


def _foreign_input(path: Path, manifest: dict, problem):
    """(the graph's image input, problem) for an artifact without edgecnn's manifest (one edgecnn did
    not write: its input shape comes from the graph), else (None, problem)."""
    from edgecnn.runtime.graphs import graph_input

    if problem is not None or manifest or path.suffix not in (".onnx", ".xml"):
        return None, problem
    try:
        return graph_input(path), None
    except BadArgumentError as e:
        return None, str(e)


def _readers(path: Path, foreign, opts: BenchOptions) -> list:
    """The backends that time `path`: its own; for a graph edgecnn did not write, every requested
    runtime that loads it as it is (an ONNX file in ONNX Runtime and OpenVINO)."""
    own = backend_for(path)
    if foreign is None:
        return [own]
    suffix = path.suffix.lower()
    found = [get_backend(r) for r in opts.runtimes]
    return [b for b in found if suffix in (*b.suffixes, *b.reads)] or [own]


def _preprocess(inp: dict, shape, opts: BenchOptions):
    """(Preprocess or None, problem): a manifest's preprocessing, else --mean / --std for a graph
    that records none (its size and channels from `shape`, C x H x W)."""
    from edgecnn.card import fit_channels
    from edgecnn.data import Preprocess

    if inp and inp.get("mean") is not None:
        try:
            size, mean, std = tuple(inp["crop_size"]), tuple(inp["mean"]), tuple(inp["std"])
            return Preprocess(size, inp["shape"][1], mean, std, inp.get("resize_size")), None
        except (KeyError, TypeError, ValueError, IndexError) as e:
            return None, f"its manifest's input is corrupt ({type(e).__name__}: {e}); export it again"
    if opts.mean is None or shape is None:
        return None, None
    c, h, w = shape
    problem = mean_std_problem(opts.mean, opts.std, c)
    if problem:
        return None, problem
    return Preprocess((h, w), c, fit_channels(opts.mean, c), fit_channels(opts.std, c), None), None


def _jobs_for_artifact(item: str, opts: BenchOptions) -> list[_Job]:
    from edgecnn.export import check_files, read_manifest
    from edgecnn.runtime.graphs import graph_precision, input_chw

    path = Path(item)
    problem = check_files(path) if path.is_file() else f"artifact not found: {path}"
    manifest = read_manifest(path) if problem is None else {}
    inp = manifest.get("input", {})
    shape = inp.get("shape")
    foreign, problem = _foreign_input(path, manifest, problem)
    precision = manifest.get("precision") or (graph_precision(path) if foreign else "?")
    jobs = []
    for backend, b in itertools.product(_readers(path, foreign, opts), opts.batches):
        runtime = backend.runtime
        row = BenchRow(
            model=manifest.get("model", path.stem),
            variant=path.name,
            source=path.name,
            runtime=runtime,
            device=opts.device,
            precision=precision,
            batch=b,
            threads=opts.threads,
            artifact=str(path),
        )
        if problem is not None:
            row.error = problem
        elif not available(runtime):
            row.error, row.hint = f"{runtime} is not installed", backend.install_hint
        elif shape and not inp.get("dynamic_batch") and shape[0] != b:
            row.error = (
                f"{path.name} has a static batch of {shape[0]}; export it with --batch {b} or --dynamic-batch"
            )
        chw = tuple(shape[1:]) if shape else None
        if foreign is not None and not row.error:
            try:
                chw = input_chw(foreign, path, b, opts.input_size)
            except BadArgumentError as e:
                row.error = str(e)
        preprocess, bad = _preprocess(inp, chw, opts)
        if opts.data and preprocess is None and not bad:  # found before any timing
            bad = f"{path.name} records no preprocessing: give --mean and --std (per channel, 0..1 pixels)"
        row.error = row.error or bad or ""
        if row.error:
            jobs.append(_Job(row, None, None, preprocess, None))
            continue
        row.file_size_bytes = _file_size(path)
        mem = {"runtime": runtime, "artifact": str(path)}
        jobs.append(_Job(row, lambda p=path: p, mem, preprocess, chw, manifest.get("recipe")))
    return jobs


def bench(
    items: list,
    options: BenchOptions | None = None,
    *,
    on_row: Callable[[BenchRow, int, int], None] | None = None,
    on_step: Callable[[str], None] | None = None,
) -> BenchRun:
    """Measure every (item, runtime, precision, batch); rows are appended in that order. An item is a
    zoo name, a model file, an artifact file or a `Model` (a module with its card)."""
    from edgecnn.bench.accuracy import evaluate
    from edgecnn.bench.fingerprint import machine_fingerprint
    from edgecnn.bench.latency import measure
    from edgecnn.bench.memory import measure_memory

    opts = (options or BenchOptions()).validate()
    if not items:
        raise BadArgumentError("give at least one model name or artifact file to benchmark")
    step = on_step or (lambda msg: log.info("%s", msg))
    jobs: list[_Job] = []
    for item in items:
        is_file = isinstance(item, str | Path) and _is_artifact(str(item))
        jobs += _jobs_for_artifact(str(item), opts) if is_file else _jobs_for_source(item, opts, step)
    if opts.threads:
        import torch

        torch.set_num_threads(opts.threads)
    settings = {k: v for k, v in vars(opts).items()}
    settings["not_measured"] = [f"{r} {p}" for r, p in not_measured(opts)]
    run = BenchRun(machine_fingerprint(opts.threads), settings)
    for i, job in enumerate(jobs):
        row = job.row
        if not row.error:
            step(f"measuring {i + 1}/{len(jobs)}: {row.model} {row.variant} {row.runtime} batch {row.batch}")
            try:
                _measure(job, opts, measure, evaluate, measure_memory)
            except EdgeCNNError as e:
                row.error = str(e)
            except Exception as e:  # a runtime failing on one artifact is a row, not the end of the run
                row.error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        run.rows.append(row)
        if on_row:
            on_row(row, i + 1, len(jobs))
    return run


def _measure(job: _Job, opts: BenchOptions, measure, evaluate, measure_memory) -> None:
    row = job.row
    # Every runner takes the options it knows and ignores the rest (hint: OpenVINO; compile: torch);
    # the table adds per-precision ones (OpenVINO's f32 pin for fp32 rows).
    extra = {
        "hint": opts.hint,
        "compile": opts.compile,
        "cuda_graph": opts.cuda_graph,
        **get_backend(row.runtime).options_for(row.precision),
    }
    runner = get_runner(row.runtime, job.make_runner(), device=opts.device, threads=opts.threads, **extra)
    chw = job.input_chw
    if chw is None:
        raise BadArgumentError(f"{row.artifact}: no manifest beside it, so its input shape is unknown")
    row.float_math = getattr(runner, "float_math", "")
    x = np.random.default_rng(0).standard_normal((row.batch, *chw)).astype(np.float32)
    lat = measure(runner, x, warmup_s=opts.warmup_s, min_iters=opts.min_iters, min_seconds=opts.min_seconds)
    row.latency = lat
    if opts.data or (opts.accuracy and job.recipe and job.recipe.get("data")):
        from edgecnn.data.splits import held_out_images

        if job.preprocess is None:  # a model file's test split, on an artifact that lost its manifest
            raise BadArgumentError(f"{row.artifact}: its preprocessing is unknown, so it cannot be scored")
        dataset = held_out_images(opts.data, job.preprocess, job.recipe)
        if dataset is not None:
            row.accuracy = evaluate(runner, dataset, batch=row.batch, limit=opts.data_limit)
    del runner
    if opts.memory and job.mem_job:
        mem_job = {
            **job.mem_job,
            "device": opts.device,
            "threads": opts.threads,
            "input_shape": [row.batch, *chw],
            "options": extra,
        }
        row.memory = measure_memory(mem_job)
