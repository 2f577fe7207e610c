"""ONNX -> TensorRT engine through the TensorRT 10/11 Python API.

Precision comes from the ONNX, not from builder flags: the network is strongly typed (TensorRT 11
always is; on 10 the flag is set), so the fp32 ONNX gives an fp32 engine, the fp16 ONNX an fp16 one
and the Q/DQ ONNX an int8 one. TensorRT 11 removed the implicit INT8 calibrator and the FP16 flag,
so this is the path that works on both.
"""

from __future__ import annotations

import logging
from pathlib import Path

from edgecnn.errors import ExportError, MissingBackendError
from edgecnn.runtime.tensorrt import require_tensorrt_gpu

log = logging.getLogger(__name__)


def _major(trt) -> int:
    return int(trt.__version__.split(".")[0])


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    *,
    input_shape: tuple[int, int, int, int],
    dynamic_batch: bool,
    max_batch: int = 32,
    workspace_gib: float = 2.0,
    timing_cache: Path | None = None,
) -> dict:
    """Parse the ONNX, build a serialized engine and write it; the timing cache is read and updated."""
    trt = require_tensorrt_gpu()
    if _major(trt) < 10:
        raise MissingBackendError(
            f"TensorRT {trt.__version__} is too old; edgecnn needs 10 or newer: "
            "pip install 'edgecnn[tensorrt]'"
        )
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if _major(trt) == 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError(
            f"TensorRT's ONNX parser rejected the model: {errors[0] if errors else 'no detail'}"
        )

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    batch, *chw = input_shape
    profile_shapes = None
    if dynamic_batch:
        opt = max(1, min(batch, max_batch))
        profile_shapes = [(1, *chw), (opt, *chw), (max_batch, *chw)]
        profile = builder.create_optimization_profile()
        profile.set_shape(network.get_input(0).name, *profile_shapes)
        config.add_optimization_profile(profile)
    cached = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cached)
    config.set_timing_cache(cache, ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError("TensorRT could not build an engine (its log above names the layer)")
    Path(engine_path).write_bytes(bytes(serialized))
    if timing_cache is not None:
        from edgecnn.artifacts import atomic_output

        with atomic_output(timing_cache, force=True) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    return {
        "tensorrt": trt.__version__,
        "strongly_typed": True,
        "workspace_gib": workspace_gib,
        "profile": [list(s) for s in profile_shapes] if profile_shapes else None,
        "timing_cache": str(timing_cache) if timing_cache else None,
    }


def build(onnx_path: Path, artifact: Path, *, options, input_shape, precision, out_dir: Path) -> dict:
    """The backend table's builder; the timing cache lives beside the engines and is shared by them."""
    return build_engine(
        onnx_path,
        artifact,
        input_shape=input_shape,
        dynamic_batch=options.dynamic_batch,
        max_batch=options.max_batch,
        workspace_gib=options.workspace_gib,
        timing_cache=out_dir / "tensorrt.timing.cache",
    )
