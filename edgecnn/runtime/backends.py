"""The backend table: one row per inference runtime, read by export, bench, the memory probe and runners.

Adding a backend is one row here plus its runner module (and a builder when it has its own artifact
format). Code elsewhere asks the row (`backend.builder is None`, `backend.devices[0]`) instead of
comparing runtime names, so no `if runtime == ...` chain grows with every backend. Code is named as
"module:attr" strings: this table imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgecnn.errors import BadArgumentError, UnknownNameError

AUTO_INT8 = "auto"  # `--int8-activations auto`: each backend's fast scheme (its first)
# What a timed ratio is against: the runtime's default float math, or float layers pinned to fp32.
BASELINES = ("default", "fp32")


@dataclass(frozen=True)
class Backend:
    runtime: str  # the name `--runtime` takes and rows show
    module: str  # the Python package whose presence means the backend is installed
    runner: str  # "module:Class" implementing runtime.base.Runner
    install_hint: str
    devices: tuple[str, ...]  # what its runner accepts; the first is where export verifies artifacts
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8")  # what it runs
    # Where a device runs fewer (eager PyTorch on the CPU: no fp16 or tf32): device -> precisions.
    device_precisions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    target: str | None = None  # the name `export --target` takes; None: no artifact of its own
    suffixes: tuple[str, ...] = ()  # artifact suffixes; the first is what export writes
    reads: tuple[str, ...] = ()  # other artifacts its runner loads as they are (OpenVINO reads ONNX)
    # Files published with the artifact, before it (a reader opens the main file last): templates on
    # the artifact's "{stem}" and "{name}"; those that exist count.
    side_files: tuple[str, ...] = ()
    # "module:func" building the artifact from the ONNX; None: the artifact is the ONNX itself.
    builder: str | None = None
    # "module:func" that raises a one-line error when the backend cannot run here (TensorRT: no GPU);
    # None: being installed is enough.
    ready: str | None = None
    # "module:func" run once before its module is first imported (OpenVINO: keep its telemetry from
    # phoning home); None: nothing to do.
    before_import: str | None = None
    # INT8 activation schemes it loads, its fast one first: what "auto" (the default) picks for it.
    int8_activations: tuple[str, ...] = ("s8", "u8")
    # Its runner reports per-node times in the optimised graph (`node_times`; made with profile=True):
    # the planner then times candidates inside the whole model instead of alone.
    node_profiler: bool = False
    # Runner options per precision. OpenVINO runs fp32 models in bf16 on CPUs with bf16 units (2x faster
    # on AVX512-BF16, and not fp32 any more): an fp32 artifact is pinned to f32 math, so it is checked
    # and measured as what it says.
    runner_options: dict[str, dict] = field(default_factory=dict)
    # The runner option of `runner_options` that pins float math (OpenVINO: "precision"); None: the
    # runtime's default float math is fp32, so its two baselines are one.
    float_pin: str | None = None

    def int8_scheme(self, requested: str) -> str:
        """The activation scheme its INT8 artifacts use: `requested`, or its fast one for "auto";
        a one-line error for a scheme it cannot load."""
        from edgecnn.runtime.precisions import get_int8_scheme

        if check_int8_activations(requested) == AUTO_INT8:
            return self.int8_activations[0]
        if requested not in self.int8_activations:
            scheme = get_int8_scheme(requested)
            raise BadArgumentError(
                f"{self.runtime} cannot load {scheme.description} activations: use --int8-activations "
                f"{' or '.join([*self.int8_activations, AUTO_INT8])} for it"
            )
        return requested

    def precisions_on(self, device: str) -> tuple[str, ...]:
        return self.device_precisions.get(device, self.precisions)

    def options_for(self, precision: str) -> dict:
        return dict(self.runner_options.get(precision, {}))

    def timing_options(self, precision: str, baseline: str) -> dict:
        """Runner options of a timed `precision` artifact under `baseline`: "fp32" pins float layers
        as that precision's row does, "default" leaves them to the runtime (OpenVINO: bf16 on CPUs
        with bf16 units). Both sides of a ratio take the same baseline."""
        if baseline not in BASELINES:
            raise UnknownNameError("baseline", baseline, BASELINES)
        options = self.options_for(precision)
        if baseline == "default" and self.float_pin:
            options.pop(self.float_pin, None)
        return options

    def files(self, artifact: str | Path) -> list[Path]:
        """The artifact and its existing side files, in publish order (side files first)."""
        path = Path(artifact)
        return [p for p in self.side_paths(path) if p.exists()] + [path]

    def side_paths(self, artifact: str | Path) -> list[Path]:
        """Every side file the artifact can have (OpenVINO's .bin, an ONNX's external data)."""
        path = Path(artifact)
        return [path.parent / t.format(stem=path.stem, name=path.name) for t in self.side_files]


def check_int8_activations(requested: str) -> str:
    """`requested` when it names an INT8 activation scheme or "auto"; a one-line error otherwise."""
    from edgecnn.runtime.precisions import INT8_ACTIVATIONS

    if requested != AUTO_INT8 and requested not in INT8_ACTIVATIONS:
        raise UnknownNameError("int8 activation type", requested, [*INT8_ACTIVATIONS, AUTO_INT8])
    return requested


BACKENDS: dict[str, Backend] = {
    b.runtime: b
    for b in (
        Backend(
            runtime="torch",
            module="torch",
            runner="edgecnn.runtime.torch_runner:TorchRunner",
            install_hint="pip install torch",
            devices=("cpu", "cuda"),
            # Eager PyTorch casts the model itself; int8 lives in artifacts. On the CPU fp16 and tf32
            # do not exist as fast paths (bf16 does with AVX512-BF16/AMX; the runner says if not).
            precisions=("fp32", "tf32", "fp16", "bf16"),
            device_precisions={"cpu": ("fp32", "bf16")},
            runner_options={
                "tf32": {"tf32": True},
                "fp16": {"dtype": "float16"},
                "bf16": {"dtype": "bfloat16"},
            },
        ),
        Backend(
            runtime="onnxruntime",
            module="onnxruntime",
            runner="edgecnn.runtime.ort:OrtRunner",
            install_hint="pip install onnxruntime (or onnxruntime-gpu for CUDA)",
            devices=("cpu", "cuda", "tensorrt"),
            target="onnx",
            suffixes=(".onnx",),
            side_files=("{name}.data",),  # weights of models over 2 GiB (protobuf's limit)
            node_profiler=True,
            # uint8 activations: ONNX Runtime's x86 kernels (VNNI) have no fast path for int8 x int8;
            # ResNet-50 ran 2.5x faster with u8 than with s8 here (benchmarks/results/suite_2core_cpu.md).
            int8_activations=("u8", "s8"),
        ),
        Backend(
            runtime="openvino",
            module="openvino",
            runner="edgecnn.runtime.openvino:OpenVINORunner",
            install_hint="pip install 'edgecnn[openvino]'",
            before_import="edgecnn.runtime.openvino:block_telemetry",
            devices=("cpu", "gpu"),
            target="openvino",
            suffixes=(".xml",),
            reads=(".onnx",),
            side_files=("{stem}.bin",),
            builder="edgecnn.export.openvino:build",
            precisions=("fp32", "bf16", "fp16", "int8"),
            # int8 artifacts keep float layers (those left in fp32, the head): pinned alike, so an int8
            # row or student and its fp32 baseline never differ in float precision. bf16 is OpenVINO's
            # own default on CPUs with bf16 units: the fp32 IR run so, a row of its own.
            runner_options={
                "fp32": {"precision": "f32"},
                "int8": {"precision": "f32"},
                "bf16": {"precision": "bf16"},
            },
            float_pin="precision",
            node_profiler=True,
            # Symmetric int8, as NNCF's performance preset makes: within 15% of u8 on ResNets and
            # faster on MobileNetV2 / EfficientNet-B0 here (benchmarks/results/suite_2core_cpu.md).
            int8_activations=("s8", "u8"),
        ),
        Backend(
            runtime="tensorrt",
            module="tensorrt",
            runner="edgecnn.runtime.tensorrt:TensorRTRunner",
            install_hint="pip install 'edgecnn[tensorrt]' on a machine with an NVIDIA GPU and CUDA",
            devices=("cuda",),
            target="tensorrt",
            suffixes=(".engine", ".plan"),
            builder="edgecnn.export.tensorrt:build",
            ready="edgecnn.runtime.tensorrt:require_tensorrt_gpu",
            int8_activations=("s8",),  # TensorRT requires zero points of 0: symmetric activations
        ),
    )
}
# Export targets (`--target onnx`) -> the backend that runs their artifacts.
TARGETS: dict[str, Backend] = {b.target: b for b in BACKENDS.values() if b.target}


def get_backend(runtime: str) -> Backend:
    try:
        return BACKENDS[runtime]
    except KeyError:
        raise UnknownNameError("runtime", runtime, BACKENDS) from None


def get_target(target: str) -> Backend:
    try:
        return TARGETS[target]
    except KeyError:
        raise UnknownNameError("target", target, TARGETS) from None


def backend_for(artifact) -> Backend:
    """The backend that runs an artifact file; an in-memory module runs in the one without artifacts."""
    if not isinstance(artifact, str | Path):
        return next(b for b in BACKENDS.values() if not b.suffixes)
    suffix = Path(artifact).suffix.lower()
    for b in BACKENDS.values():
        if suffix in b.suffixes:
            return b
    known = ", ".join(s for b in BACKENDS.values() for s in b.suffixes)
    raise BadArgumentError(f"cannot tell the runtime of {artifact}: expected one of {known}")


def artifact_suffixes() -> tuple[str, ...]:
    return tuple(s for b in BACKENDS.values() for s in b.suffixes)


def backend_packages() -> tuple[str, ...]:
    """The Python packages of every backend (what result files and manifests record versions of)."""
    return tuple(b.module for b in BACKENDS.values())
