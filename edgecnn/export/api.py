"""`export`: model or converted file -> ONNX / OpenVINO IR / TensorRT engine, verified, with manifests.

Every artifact is produced in a hidden work folder beside its destination, verified against PyTorch
there, and only then moved into place (same filesystem, so each move is an atomic rename) after its
manifest, which records every file's sha256: a visible artifact always has its manifest, and one
that does not match it is not reused. Work folders carry the writer's pid, so the next export sweeps
what a killed one left.
Options are checked (`options.py`) and inputs prepared (`paths_and_images.py`) before anything is written;
each target is built, verified and published by `targets.py`.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

from edgecnn.artifacts import work_prefix
from edgecnn.errors import BadArgumentError
from edgecnn.export.graph import is_graph, prepare_graph
from edgecnn.export.manifest import target_manifest
from edgecnn.export.options import ExportOptions
from edgecnn.export.paths_and_images import prepare, recorded_calib
from edgecnn.export.results import ExportResult
from edgecnn.export.targets import build_target, make_onnx
from edgecnn.runtime import ensure_ready, get_target

log = logging.getLogger(__name__)


def export(
    source: str,
    options: ExportOptions | None = None,
    *,
    weights=None,
    convert: dict | None = None,
    num_classes: int | None = None,
    in_chans: int | None = None,
    model_kwargs: dict | None = None,
    on_step: Callable[[str], None] | None = None,
    loaded=None,
) -> ExportResult:
    """Export `source` (a `Model`, a zoo name, a model file, or an ONNX file exported as the graph it
    is and checked against ONNX Runtime fp32 of it) to every target in `options`.

    convert: keyword arguments for `edgecnn.transforms.convert` (fold_bn, separable, bottleneck),
    applied before exporting. loaded: an already built `Model` for `source` (the benchmark
    passes its own so random-weight models are the same in every runtime). Options and backends are
    checked before anything is built or written.
    """
    from edgecnn.card import Model
    from edgecnn.transforms import load_source

    opts = recorded_calib(loaded or source, options or ExportOptions()).validate()
    step = on_step or (lambda msg: log.info("%s", msg))
    for target in opts.targets:  # fail before any work: "writes nothing"
        ensure_ready(get_target(target))
    if is_graph(source):
        _only_the_graph(
            source,
            weights=weights,
            convert=convert,
            num_classes=num_classes,
            in_chans=in_chans,
            model_kwargs=model_kwargs,
        )
        step("reading the graph")
        job = prepare_graph(opts, Path(source), step)
        loaded = job.loaded
    else:
        if opts.mean is not None:
            raise BadArgumentError("--mean / --std go with an ONNX file; a model's card holds its own")
        step("loading model")
        if loaded is None:
            loaded = load_source(source, weights, num_classes, in_chans, model_kwargs)
        job = prepare(opts, loaded=loaded, convert=convert, on_step=step)

    shown = loaded.path or loaded.card.name if isinstance(source, Model) else str(source)
    result = ExportResult(loaded.card.name, shown, job.shape, opts.dynamic_batch, str(job.out_dir), [])
    result.reference = job.reference_name
    # from here, a kill leaves outputs the next run of this export replaces
    with job.journal.writing(), tempfile.TemporaryDirectory(dir=job.out_dir, prefix=work_prefix()) as work:
        _build_all(job, Path(work), result, step)
    result.targets.sort(key=lambda r: opts.targets.index(r.target))
    return result


def _only_the_graph(source, **given) -> None:
    """An ONNX file is exported as the graph it is: what rebuilds or changes a PyTorch model is refused."""
    flags = {"weights": "--weights", "convert": "--fold-bn or a swap", "num_classes": "--num-classes"}
    flags.update(in_chans="--in-chans", model_kwargs="--model-arg")
    for key, value in given.items():
        if value:
            raise BadArgumentError(
                f"{flags[key]} is for a PyTorch model; {Path(source).name} is an ONNX graph (exported as is)"
            )


def _build_all(job, work: Path, result: ExportResult, step) -> None:
    """Every target, built from one ONNX per int8 activation scheme (each target's fast one by
    default; one ONNX in all otherwise), the target whose artifact is that ONNX last."""
    groups: dict[str | None, list[str]] = {}
    for target in job.options.targets:
        groups.setdefault(job.options.activations_for(target), []).append(target)
    for k, (activations, targets) in enumerate(groups.items()):
        onnx_path, result.onnx, quantization = make_onnx(job, work / str(k), step, activations)
        for target in sorted(targets, key=lambda t: get_target(t).builder is None):
            step(f"{target}: building")
            res = build_target(
                target, onnx_path, work, job, step, quantization, lambda r: target_manifest(r, job, result)
            )
            result.targets.append(res)
