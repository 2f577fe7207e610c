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


@dataclass(frozen=True)
class Backend:
    runtime: str  # the name `--runtime` takes and rows show
    module: str  # the Python package whose presence means the backend is installed
    runner: str  # "module:Class" implementing runtime.base.Runner
    install_hint: str
    devices: tuple[str, ...]  # what its runner accepts; the first is where export verifies artifacts
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8")  # what it runs
    target: str | None = None  # the name `export --target` takes; None: no artifact of its own
    suffixes: tuple[str, ...] = ()  # artifact suffixes; the first is what export writes
    # Files published with the artifact, before it (a reader opens the main file last): templates on
    # the artifact's "{stem}" and "{name}"; those that exist count.
    side_files: tuple[str, ...] = ()
    # "module:func" building the artifact from the ONNX; None: the artifact is the ONNX itself.
    builder: str | None = None
    # "module:func" that raises a one-line error when the backend cannot run here (TensorRT: no GPU);
    # None: being installed is enough.
    ready: str | None = None
    int8_activations: tuple[str, ...] = ("s8", "u8")  # int8 activation schemes it loads
    # Its runner reports per-node times in the optimised graph (`node_times`; made with profile=True):
    # the planner then times candidates inside the whole model instead of alone.
    node_profiler: bool = False
    # Runner options per precision. OpenVINO runs fp32 models in bf16 on CPUs with bf16 units (2x faster
    # on AVX512-BF16, and not fp32 any more): an fp32 artifact is pinned to f32 math, so it is checked
    # and measured as what it says.
    runner_options: dict[str, dict] = field(default_factory=dict)

    def options_for(self, precision: str) -> dict:
        return dict(self.runner_options.get(precision, {}))

    def files(self, artifact: str | Path) -> list[Path]:
        """The artifact and its existing side files, in publish order (side files first)."""
        path = Path(artifact)
        side = [path.parent / t.format(stem=path.stem, name=path.name) for t in self.side_files]
        return [p for p in side if p.exists()] + [path]


BACKENDS: dict[str, Backend] = {
    b.runtime: b
    for b in (
        Backend(
            runtime="torch",
            module="torch",
            runner="edgecnn.runtime.torch_runner:TorchRunner",
            install_hint="pip install torch",
            devices=("cpu", "cuda"),
            precisions=("fp32",),  # eager PyTorch is the fp32 baseline; reduced precision lives in artifacts
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
        ),
        Backend(
            runtime="openvino",
            module="openvino",
            runner="edgecnn.runtime.openvino:OpenVINORunner",
            install_hint="pip install 'edgecnn[openvino]'",
            devices=("cpu", "gpu"),
            target="openvino",
            suffixes=(".xml",),
            side_files=("{stem}.bin",),
            builder="edgecnn.export.openvino:build",
            runner_options={"fp32": {"precision": "f32"}},
            node_profiler=True,
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
