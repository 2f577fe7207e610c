"""`export`: model or converted file -> ONNX / OpenVINO IR / TensorRT engine, verified, with manifests.

Every artifact is produced in a hidden work folder beside its destination, verified against PyTorch
there, and only then moved into place (same filesystem, so each move is an atomic rename); its
manifest is written last. An interrupted or failed export leaves no artifact that looks complete.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgecnn.artifacts import check_writable
from edgecnn.errors import BadArgumentError, UnknownNameError
from edgecnn.export.onnx import DEFAULT_OPSET, EXPORTERS, ExportError, artifact_files
from edgecnn.export.parity import TOLERANCES, Parity, compare, run_all

log = logging.getLogger(__name__)

TARGETS = {"onnx": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt"}  # target -> runtime
PRECISIONS = ("fp32", "fp16", "int8")
_SUFFIX = {"onnx": ".onnx", "openvino": ".xml", "tensorrt": ".engine"}


@dataclass
class ExportOptions:
    targets: tuple[str, ...] = ("onnx",)
    precision: str = "fp32"
    out_dir: Path | None = None
    batch: int = 1
    dynamic_batch: bool = False
    max_batch: int = 32
    input_size: tuple[int, int] | None = None
    opset: int = DEFAULT_OPSET
    exporter: str = "torchscript"
    simplify: bool = True
    calib: str | None = None  # image folder or "digits"
    calib_size: int = 100
    calib_method: str = "minmax"
    per_channel: bool = True
    int8_activations: str = "s8"  # "u8": faster in ONNX Runtime on x86, not loadable by TensorRT
    data: str | None = None  # real check images; default: the calibration source's held-out part
    check_size: int = 64
    seeded_checks: int = 8
    verify: bool = True
    force: bool = False
    workspace_gib: float = 2.0
    seed: int = 0

    def validate(self) -> ExportOptions:
        for t in self.targets:
            if t not in TARGETS:
                raise UnknownNameError("target", t, TARGETS)
        if not self.targets:
            raise BadArgumentError("give at least one --target (onnx, openvino, tensorrt)")
        if self.precision not in PRECISIONS:
            raise UnknownNameError("precision", self.precision, PRECISIONS)
        if self.exporter not in EXPORTERS:
            raise UnknownNameError("exporter", self.exporter, EXPORTERS)
        if self.precision == "int8" and not self.calib:
            raise BadArgumentError(
                "--precision int8 needs calibration images: --calib DIR (a folder of images) or "
                "--calib digits (the bundled MNIST digits)"
            )
        if self.int8_activations not in ("s8", "u8"):
            raise UnknownNameError("int8 activation type", self.int8_activations, ("s8", "u8"))
        if self.precision == "int8" and self.int8_activations == "u8" and "tensorrt" in self.targets:
            raise BadArgumentError(
                "TensorRT needs symmetric int8 activations: drop --int8-activations u8 for --target tensorrt"
            )
        if self.batch < 1 or self.max_batch < self.batch:
            raise BadArgumentError(f"need 1 <= --batch <= --max-batch, got {self.batch} and {self.max_batch}")
        if self.calib_size < 1 or self.check_size < 0 or self.seeded_checks < 1:
            raise BadArgumentError("--calib-size and the number of check inputs must be positive")
        return self


@dataclass
class TargetResult:
    target: str
    precision: str
    status: str  # "ok", "not verified", "export failed", "verify failed"
    path: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    parity: list[Parity] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""
    manifest: str | None = None
    info: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "not verified")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["parity"] = [p.to_dict() for p in self.parity]
        return d


@dataclass
class ExportResult:
    model: str
    source: str
    input_shape: tuple[int, ...]
    dynamic_batch: bool
    out_dir: str
    targets: list[TargetResult]
    onnx: dict = field(default_factory=dict)
    quantization: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.targets)

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "targets"}
        d["targets"] = [t.to_dict() for t in self.targets]
        d["ok"] = self.ok
        return d


def load_source(source: str, weights=None, num_classes=None, in_chans=None, model_kwargs=None):
    """A zoo name (with optional weights) or a converted .safetensors, as a LoadedModel."""
    from edgecnn.zoo import load_model

    if str(source).endswith(".safetensors"):
        if weights is not None:
            raise BadArgumentError("--weights goes with a zoo model name, not a converted file")
        from edgecnn.transforms import load_converted

        return load_converted(source)
    if Path(source).suffix in (".pt", ".pth", ".onnx"):
        raise BadArgumentError(
            f"{source}: export takes a zoo model name or a .safetensors file written by `edgecnn convert`; "
            "for a zoo model with your weights use MODEL --weights FILE"
        )
    kwargs = model_kwargs or {}
    return load_model(source, weights=weights, num_classes=num_classes, in_chans=in_chans, **kwargs)


def check_input_size(spec, size: tuple[int, int]) -> tuple[int, int]:
    h, w = size
    if spec.fixed_input and tuple(size) != tuple(spec.input_size):
        raise BadArgumentError(
            f"{spec.name} has a fixed-size classifier: only --input-size {spec.input_size[0]} "
            f"{spec.input_size[1]} works, not {h} {w}"
        )
    if min(h, w) < spec.min_input_size:
        raise BadArgumentError(
            f"input size {h}x{w} is too small for {spec.name} (at least "
            f"{spec.min_input_size}x{spec.min_input_size})"
        )
    return h, w


def planned_paths(source: str, options: ExportOptions, *, transforms=(), weights=None) -> dict[str, Path]:
    """Where `export` writes each target's artifact, known without building anything.

    The name records what makes artifacts differ: transforms applied at export, a non-default input
    size, the batch (static N or dynamic) and the precision.
    """
    from edgecnn.zoo import get_spec

    if str(source).endswith(".safetensors"):
        from edgecnn.transforms.pipeline import read_recipe

        recipe = read_recipe(source)
        spec, default_size = get_spec(recipe["model"]), tuple(recipe["input_size"])
        stem = Path(source).name.removesuffix(".safetensors")
    else:
        spec = get_spec(source)
        default_size, stem = tuple(spec.input_size), spec.name
    opts = options
    size = tuple(opts.input_size or default_size)
    if transforms:
        stem += "." + "+".join(transforms)
    if size != default_size:
        stem += f".{size[0]}x{size[1]}"
    stem += ".dynbatch" if opts.dynamic_batch else (f".b{opts.batch}" if opts.batch != 1 else "")
    stem += "" if opts.precision == "fp32" else f".{opts.precision}"
    stem += "u8" if opts.precision == "int8" and opts.int8_activations == "u8" else ""
    out_dir = Path(opts.out_dir or Path("export") / spec.name)
    return {t: out_dir / f"{stem}{_SUFFIX[t]}" for t in opts.targets}


def _image_sets(opts: ExportOptions, preprocess):
    """(calibration set or None, real check set or None): never the same images."""
    from edgecnn.data import DIGITS, open_dataset
    from edgecnn.data.dataset import Subset

    calib = check = None
    if opts.calib:
        full = open_dataset(opts.calib, preprocess, split="train")
        order = np.random.default_rng(opts.seed).permutation(len(full))
        calib = Subset(full, order[: opts.calib_size], "calib")
        if opts.data is None:
            if opts.calib == DIGITS:
                check = open_dataset(DIGITS, preprocess, split="test")
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
    return calib, check


def _batches(dataset, batch: int, limit: int) -> list[np.ndarray]:
    out = [x for x, _ in dataset.batches(batch, limit=limit, drop_last=True)]
    return out


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
    """Export `source` (a zoo name or a converted .safetensors) to every target in `options`.

    convert: keyword arguments for `edgecnn.transforms.convert` (fold_bn, separable, bottleneck),
    applied before exporting. loaded: an already built `LoadedModel` for `source` (the benchmark
    passes its own so random-weight models are the same in every runtime). Backends are checked
    before anything is built or written.
    """
    from edgecnn.data import Preprocess
    from edgecnn.export.onnx import INPUT_NAME, export_onnx
    from edgecnn.runtime import get_runner, require

    opts = (options or ExportOptions()).validate()
    step = on_step or (lambda msg: log.info("%s", msg))
    for target in opts.targets:  # fail before any work: "writes nothing"
        if target == "tensorrt":
            from edgecnn.runtime.tensorrt import require_tensorrt_gpu

            require_tensorrt_gpu()
        else:
            require(TARGETS[target])

    step("loading model")
    if loaded is None:
        loaded = load_source(source, weights, num_classes, in_chans, model_kwargs)
    spec, model = loaded.spec, loaded.model
    transforms = [t["name"] for t in (loaded.recipe or {}).get("transforms", [])]
    applied: list[str] = []
    default_size = tuple((loaded.recipe or {}).get("input_size") or spec.input_size)
    size = check_input_size(spec, tuple(opts.input_size or default_size))
    if convert:
        from edgecnn.transforms import convert as run_convert

        step("converting")
        converted = run_convert(loaded, input_size=size, **convert)
        model = converted.model
        applied = [r.transform for r in converted.reports]
        transforms += applied

    finals = planned_paths(source, opts, transforms=applied)
    first = next(iter(finals.values()))
    out_dir, stem = first.parent, first.name.removesuffix(first.suffix)
    for path in finals.values():
        check_writable(path, force=opts.force)

    preprocess = Preprocess.for_model(spec, input_size=size, in_chans=loaded.in_chans)
    calib_set, check_set = _image_sets(opts, preprocess)
    shape = (opts.batch, loaded.in_chans, *size)
    rng = np.random.default_rng(opts.seed)
    n_seeded = max(1, opts.seeded_checks // opts.batch)
    seeded = [rng.standard_normal(shape).astype(np.float32) for _ in range(n_seeded)]
    real = _batches(check_set, opts.batch, opts.check_size) if check_set and opts.verify else []
    reference = {}
    if opts.verify:
        step("running PyTorch reference")
        torch_runner = get_runner("torch", model)
        try:
            reference["seeded"] = run_all(torch_runner, seeded).astype(np.float64)
        except RuntimeError as e:
            raise BadArgumentError(
                f"{spec.name} cannot run at {size[0]}x{size[1]}: {str(e).splitlines()[0]}"
            ) from None
        if real:
            reference["real"] = run_all(torch_runner, real).astype(np.float64)

    out_dir.mkdir(parents=True, exist_ok=True)
    result = ExportResult(spec.name, str(source), shape, opts.dynamic_batch, str(out_dir), [])
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as work_name:
        work = Path(work_name)
        step("exporting ONNX")
        base = work / (f"{stem}.onnx" if opts.precision == "fp32" else "fp32-source.onnx")
        result.onnx = export_onnx(
            model,
            base,
            input_shape=shape,
            dynamic_batch=opts.dynamic_batch,
            opset=opts.opset,
            exporter=opts.exporter,
            simplify=opts.simplify,
        )
        onnx_path = base
        if opts.precision == "fp16":
            from edgecnn.export.quantize import to_fp16

            onnx_path = work / f"{stem}.onnx"
            result.quantization = to_fp16(base, onnx_path)
        elif opts.precision == "int8":
            from edgecnn.export.quantize import quantize_qdq

            step(f"calibrating INT8 on {len(calib_set)} images from {opts.calib}")
            calib_batch = opts.batch if not opts.dynamic_batch else 8
            onnx_path = work / f"{stem}.onnx"
            batches = (x for x, _ in calib_set.batches(calib_batch, drop_last=not opts.dynamic_batch))
            result.quantization = quantize_qdq(
                base,
                onnx_path,
                batches,
                input_name=INPUT_NAME,
                method=opts.calib_method,
                per_channel=opts.per_channel,
                activations=opts.int8_activations,
            )
            if calib_set.skipped:
                result.quantization["calibration_images_skipped"] = calib_set.skipped
        # The ONNX artifact is moved into place last: the other targets are built from it.
        for target in sorted(opts.targets, key=lambda t: t == "onnx"):
            step(f"{target}: building")
            res = _one_target(
                target, onnx_path, work, finals[target], opts, shape, seeded, real, reference, step
            )
            if res.ok:
                res.manifest = str(_manifest(res, loaded, transforms, preprocess, opts, result, size))
            result.targets.append(res)
    result.targets.sort(key=lambda r: opts.targets.index(r.target))
    return result


def _one_target(target, onnx_path, work, final, opts, shape, seeded, real, reference, step) -> TargetResult:
    from edgecnn.runtime import get_runner

    t0 = time.perf_counter()
    res = TargetResult(target, opts.precision, "ok")
    artifact = work / final.name
    try:
        if target == "onnx":
            artifact = onnx_path
        elif target == "openvino":
            from edgecnn.export.openvino import export_openvino

            res.info = export_openvino(onnx_path, artifact, compress_to_fp16=opts.precision == "fp16")
        else:
            from edgecnn.export.tensorrt import build_engine

            res.info = build_engine(
                onnx_path,
                artifact,
                input_shape=shape,
                dynamic_batch=opts.dynamic_batch,
                max_batch=opts.max_batch,
                workspace_gib=opts.workspace_gib,
                timing_cache=final.parent / "tensorrt.timing.cache",
            )
        if opts.verify:
            step(f"{target}: verifying against PyTorch")
            runtime = TARGETS[target]
            runner = get_runner(
                runtime,
                artifact,
                device="cuda" if target == "tensorrt" else "cpu",
                # fp32 artifacts are checked in fp32: OpenVINO would run them in bf16 on CPUs with bf16 units
                precision="f32" if target == "openvino" and opts.precision == "fp32" else None,
            )
            tol = TOLERANCES[opts.precision]
            # int8 ranges come from the calibration images and Gaussian noise lies outside them, so
            # int8 error is gated on the real images; agreement is gated on real images only.
            checks = [("seeded", seeded, False, opts.precision != "int8" or not real)]
            if real:
                checks.append(("images", real, True, True))
            for label, batches, gate_agreement, gate_error in checks:
                outputs = run_all(runner, batches)
                inputs = f"{label}:{sum(map(len, batches))}"
                ref = reference["real" if label == "images" else "seeded"]
                res.parity.append(
                    compare(
                        runtime,
                        inputs,
                        outputs,
                        ref,
                        tol,
                        gate_agreement=gate_agreement,
                        gate_error=gate_error,
                    )
                )
            failed = [p for p in res.parity if not p.passed]
            if failed:
                res.status = "verify failed"
                res.error = "; ".join(f"{p.inputs}: {p.reason}" for p in failed)
                res.seconds = time.perf_counter() - t0
                return res
        else:
            res.status = "not verified"
    except ExportError as e:
        res.status, res.error = "export failed", str(e)
        res.seconds = time.perf_counter() - t0
        return res
    _publish(artifact, final, force=opts.force)
    from edgecnn.zoo.weights import sha256_file

    res.path, res.size_bytes = str(final), sum(p.stat().st_size for p in artifact_files(final))
    res.sha256 = sha256_file(final)
    res.seconds = time.perf_counter() - t0
    return res


def _publish(artifact: Path, final: Path, *, force: bool) -> None:
    """Move the artifact and its side files into place, the main file last (it is what readers open)."""
    for src in artifact_files(artifact):
        dst = final.parent / (
            final.name if src == artifact else src.name.replace(artifact.stem, final.stem, 1)
        )
        check_writable(dst, force=force)
        os.replace(src, dst)


def _manifest(res: TargetResult, loaded, transforms, preprocess, opts, result: ExportResult, size) -> Path:
    from edgecnn.export.manifest import package_versions, write_manifest

    spec = loaded.spec
    manifest = {
        "model": spec.name,
        "source": result.source,
        "target": res.target,
        "runtime": TARGETS[res.target],
        "precision": res.precision,
        "weights": asdict(loaded.weights),
        "transforms": transforms,
        "recipe": loaded.recipe,
        "input": {
            "name": "input",
            "shape": list(result.input_shape),
            "dynamic_batch": opts.dynamic_batch,
            "layout": "NCHW",
            "color": "grey" if loaded.in_chans == 1 else "RGB",
            "resize_size": preprocess.resize_size,
            "crop_size": list(size),
            "mean": list(preprocess.mean),
            "std": list(preprocess.std),
        },
        "output": {"name": "logits", "num_classes": loaded.num_classes, "task": spec.task},
        "onnx": result.onnx,
        "quantization": result.quantization,
        "backend": res.info,
        "versions": package_versions("torch", "onnx", "onnxslim", "onnxruntime", "openvino", "tensorrt"),
        "parity": [p.to_dict() for p in res.parity],
        "verified": res.status == "ok",
        "file": {"path": Path(res.path).name, "size_bytes": res.size_bytes, "sha256": res.sha256},
        "seconds": round(res.seconds, 3),
    }
    return write_manifest(Path(res.path), manifest)
