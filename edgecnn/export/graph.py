"""`export` of an ONNX file edgecnn did not write: the graph as it is, in each target and precision.

No PyTorch module stands behind such a file, so every artifact is checked against ONNX Runtime fp32
running the given file, on the same seeded and real inputs a model's export uses. The image input
comes from the graph (a dynamic H x W needs --input-size); its preprocessing, which a graph does not
record, from --mean / --std, needed only where real images are read (int8 calibration, --data).
"""

from __future__ import annotations

import logging
from pathlib import Path

from edgecnn.errors import BadArgumentError, ExportError

log = logging.getLogger(__name__)


def is_graph(source) -> bool:
    """Whether `source` names an ONNX file (exported as the graph it is, not rebuilt in PyTorch)."""
    return isinstance(source, str | Path) and Path(source).suffix.lower() == ".onnx"


def graph_model(path: Path, opts):
    """(Model, GraphInput, its ONNX Runtime runner, whether its preprocessing is known) of an ONNX
    file: a card from its input and output (mean / std from opts, else none), no module: the graph
    is the model."""
    import numpy as np

    from edgecnn.artifacts import sha256_file
    from edgecnn.card import Card, Model, WeightsInfo, fit_channels, mean_std_problem
    from edgecnn.runtime import get_runner
    from edgecnn.runtime.graphs import graph_input, input_chw

    if not path.is_file():
        raise BadArgumentError(f"ONNX file not found: {path}")
    inp = graph_input(path)
    if opts.dynamic_batch and inp.shape[0] is not None:
        raise BadArgumentError(
            f"{path.name} has a static batch of {inp.shape[0]}: export it at --batch {inp.shape[0]}, "
            "without --dynamic-batch"
        )
    c, h, w = input_chw(inp, path, opts.batch, opts.input_size)
    known = opts.mean is not None and opts.std is not None
    if (opts.calib or opts.data) and not known:
        raise BadArgumentError(
            f"{path.name} records no preprocessing, and --calib / --data read images: give --mean and "
            "--std per channel on 0..1 pixels (e.g. --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225)"
        )
    problem = mean_std_problem(opts.mean, opts.std, c)
    if problem:
        raise BadArgumentError(f"{path.name}: {problem}")
    runner = get_runner("onnxruntime", path)
    probe = np.zeros((opts.batch, c, h, w), np.float32)
    try:
        out = runner.run(probe)
    except Exception as e:  # ONNX Runtime raises its own types; the first line says what failed
        raise BadArgumentError(f"{path.name} does not run at {c}x{h}x{w}: {str(e).splitlines()[0]}") from None
    card = Card(
        path.stem,
        (h, w),
        in_chans=c,
        num_classes=int(out.reshape(len(probe), -1).shape[1]),
        mean=fit_channels(opts.mean, c) if known else (0.0,) * c,
        std=fit_channels(opts.std, c) if known else (1.0,) * c,
    )
    weights = WeightsInfo("file", str(path), sha256_file(path))
    model = Model(None, card, weights, {"kind": "onnx", "path": str(path)}, None, str(path))
    return model, inp, runner, known


def graph_onnx(job, base: Path) -> dict:
    """The given graph at `base`: its input fixed to the export's shape (the batch symbolic with
    --dynamic-batch), simplified by onnxslim when asked, and checked; what the manifest records."""
    import onnx

    from edgecnn.runtime.graphs import fix_input

    source = Path(job.model)
    model = onnx.load(str(source))
    fix_input(model, job.input_name, job.shape, symbolic_batch=job.options.dynamic_batch)
    nodes = len(model.graph.node)
    if job.options.simplify:
        import contextlib
        import io

        import onnxslim

        with contextlib.redirect_stdout(io.StringIO()):
            model = onnxslim.slim(model)
    onnx.save(model, str(base))
    try:
        onnx.checker.check_model(str(base), full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"onnx.checker rejected {source.name}: {str(e).splitlines()[0]}") from None
    return {
        "exporter": f"none: the graph of {source.name}",
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        "simplified": job.options.simplify,
        "nodes": len(model.graph.node),
        "nodes_before_simplify": nodes,
        "external_data": None,
    }


def check_not_source(job) -> None:
    """An artifact may never be written over the graph it is made from."""
    source = Path(job.model).resolve()
    for target, final in job.finals.items():
        if final.resolve() == source:
            raise BadArgumentError(
                f"the {target} artifact would overwrite {source.name}, the file it is made from: give -o DIR"
            )


def prepare_graph(opts, path: Path, on_step):
    """The ExportJob of an ONNX file: every check done, the reference run, nothing written."""
    import dataclasses

    from edgecnn.artifacts import RunJournal, check_writable
    from edgecnn.data import Preprocess
    from edgecnn.export.paths_and_images import (
        ExportJob,
        add_checks,
        image_sets,
        planned_paths,
        publish_paths,
    )

    loaded, inp, runner, known = graph_model(path, opts)
    card = loaded.card
    finals = planned_paths(card, opts, file=path.with_suffix(""))
    journal = RunJournal(next(iter(finals.values())).parent, "export", publish_paths(finals))
    if journal.resumes() and not opts.force:  # what an interrupted export left: replaced
        opts = dataclasses.replace(opts, force=True)
    preprocess = Preprocess.for_model(card)
    calibration, check_set = image_sets(opts, preprocess) if known else (None, None)
    job = ExportJob(opts, loaded, path, card.input_size, [], preprocess, finals, calibration, journal)
    job.reference_name = f"ONNX Runtime fp32 of {path.name}"
    job.input_name, job.output_name = inp.name, runner.session.get_outputs()[0].name
    job.preprocessing_known, job.reference_runner = known, runner  # its session opened once
    check_not_source(job)
    for final in finals.values():
        check_writable(final, force=opts.force)
    return add_checks(job, check_set, on_step)
