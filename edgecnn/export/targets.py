"""One target's step of `export`: build its artifact from the ONNX, verify it, publish it.

Every target runs the same three steps; what differs (builder, side files, device, runner options)
comes from its row in the backend table, and the tolerance from the precision table.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from edgecnn.artifacts import check_writable, sha256_file
from edgecnn.errors import ExportError
from edgecnn.export.parity import Parity, compare, run_all
from edgecnn.export.paths_and_images import ExportJob
from edgecnn.export.results import TargetResult
from edgecnn.lazy import import_string
from edgecnn.runtime import Backend, get_precision, get_runner, get_target


def build_target(
    target: str,
    onnx_path: Path,
    work: Path,
    job: ExportJob,
    on_step,
    quantization: dict | None = None,
    manifest_for: Callable[[TargetResult], dict] | None = None,
) -> TargetResult:
    """The published, verified artifact of one target, or a result saying why there is none;
    `manifest_for(result)` gives the manifest published before it (none when not given)."""
    backend, opts = get_target(target), job.options
    final = job.finals[target]
    t0 = time.perf_counter()
    res = TargetResult(target, opts.precision, "ok", quantization=quantization or {})
    artifact = onnx_path if backend.builder is None else work / final.name
    try:
        if backend.builder is not None:
            res.info = import_string(backend.builder)(
                onnx_path,
                artifact,
                options=opts,
                input_shape=job.shape,
                precision=get_precision(opts.precision),
                out_dir=final.parent,
            )
        if opts.verify:
            on_step(f"{target}: verifying against {job.reference_name}")
            res.parity = verify(backend, artifact, job)
            failed = [p for p in res.parity if not p.passed]
            if failed:
                res.status = "verify failed"
                res.error = "; ".join(f"{p.inputs}: {p.reason}" for p in failed)
        else:
            res.status = "not verified"
    except ExportError as e:
        res.status, res.error = "export failed", str(e)
    if res.ok:
        files = backend.files(artifact)
        res.path, res.size_bytes = str(final), sum(p.stat().st_size for p in files)
        res.sha256 = sha256_file(artifact)
        res.seconds = time.perf_counter() - t0
        manifest = manifest_for(res) if manifest_for else None
        if manifest is not None:
            manifest["files"] = [
                {
                    "path": _final_name(src, artifact, final),
                    "size_bytes": src.stat().st_size,
                    "sha256": sha256_file(src),
                }
                for src in files
            ]
        res.manifest = publish(backend, artifact, final, manifest, force=opts.force)
    res.seconds = time.perf_counter() - t0
    return res


def verify(backend: Backend, artifact: Path, job: ExportJob) -> list[Parity]:
    """Run the artifact where it deploys and compare with the reference (PyTorch; ONNX Runtime fp32 of
    a given ONNX file) on the seeded and the real inputs."""
    precision = get_precision(job.options.precision)
    runner = get_runner(
        backend.runtime, artifact, device=backend.devices[0], **backend.options_for(precision.name)
    )
    # Agreement is gated on real images only, and not for random weights: their logits nearly tie,
    # so arg-max agreement is a coin flip there too (a random ResNet-34 int8: 0.84), while the error
    # bound still catches a broken graph. Seeded noise gates the error unless the precision says its
    # ranges come from calibration images (then the real images gate it).
    checks = [("seeded", job.seeded, False, precision.gate_noise_error or not job.real)]
    if job.real:
        checks.append(("images", job.real, job.loaded.weights.source != "random", True))
    out = []
    for label, batches, gate_agreement, gate_error in checks:
        outputs = run_all(runner, batches)
        ref = job.reference["real" if label == "images" else "seeded"]
        inputs = f"{label}:{sum(map(len, batches))}"
        out.append(
            compare(
                backend.runtime,
                inputs,
                outputs,
                ref,
                precision.tolerance,
                gate_agreement=gate_agreement,
                gate_error=gate_error,
            )
        )
    return out


def _final_name(src: Path, artifact: Path, final: Path) -> str:
    return final.name if src == artifact else src.name.replace(artifact.stem, final.stem, 1)


def publish(
    backend: Backend, artifact: Path, final: Path, manifest: dict | None, *, force: bool
) -> str | None:
    """Write the manifest, then move the side files and the artifact into place, the main file last
    (it is what readers open): a kill at any point leaves no visible artifact without its manifest.
    Returns the manifest's path."""
    from edgecnn.export.manifest import write_manifest

    moves = [(src, final.parent / _final_name(src, artifact, final)) for src in backend.files(artifact)]
    for _, dst in moves:  # all refused, or none moved
        check_writable(dst, force=force)
    path = str(write_manifest(final, manifest)) if manifest is not None else None
    for src, dst in moves:
        os.replace(src, dst)
    return path


def make_onnx(
    job: ExportJob, work: Path, on_step: Callable[[str], None], activations: str | None = None
) -> tuple[Path, dict, dict]:
    """The ONNX the targets are built from, in the export's precision (int8 with `activations`):
    (path, onnx info, precision info)."""
    import dataclasses

    from edgecnn.export.graph import graph_onnx, is_graph
    from edgecnn.export.onnx import export_onnx

    opts, precision = job.options, get_precision(job.options.precision)
    on_step("exporting ONNX")
    work.mkdir(parents=True, exist_ok=True)
    final = work / f"{job.stem}.onnx"
    base = final if precision.onnx_step is None else work / "fp32-source.onnx"
    if is_graph(job.model):  # an ONNX file brought as it is
        info = graph_onnx(job, base)
    else:
        info = export_onnx(
            job.model,
            base,
            input_shape=job.shape,
            dynamic_batch=opts.dynamic_batch,
            opset=opts.opset,
            exporter=opts.exporter,
            simplify=opts.simplify,
        )
    if precision.onnx_step is None:
        return base, info, {}
    step = import_string(precision.onnx_step)
    step_opts = dataclasses.replace(opts, int8_activations=activations) if activations else opts
    made = step(
        base,
        final,
        options=step_opts,
        calibration=job.calibration,
        on_step=on_step,
        input_name=job.input_name,
    )
    return final, info, made
