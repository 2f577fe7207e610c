"""PyTorch eager (optionally torch.compile or a captured CUDA graph) on CPU or CUDA.

Precisions come from the backend table's runner options: fp32 (TF32 off, so an "fp32" row is fp32),
tf32 (CUDA math mode), fp16 and bf16 (weights and inputs cast). On CUDA the model runs channels_last,
what cuDNN's fast convolution kernels want. What a device cannot do well is an error, not a slow
emulation: fp16 and tf32 need CUDA, bf16 on the CPU needs native bf16 units (AVX512-BF16 or AMX).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from edgecnn.errors import BadArgumentError, MissingBackendError
from edgecnn.runtime.base import check_device

# the `dtype` runner option (the backend table's, per precision) -> the torch dtype it casts to
DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


@functools.cache
def cpu_has_bf16() -> bool:
    """Native bf16 on this CPU (Linux flags): without it PyTorch emulates bf16, slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f" {flag}" in flags for flag in ("avx512_bf16", "amx_bf16"))


class TorchRunner:
    runtime = "torch"

    def __init__(
        self,
        model,
        *,
        device: str = "cpu",
        threads: int | None = None,
        compile: bool = False,
        dtype: str = "float32",
        tf32: bool = False,
        cuda_graph: bool = False,
        **_,
    ):
        import torch

        self.device = check_device(device, self.runtime)
        cuda = device == "cuda"
        if cuda and not torch.cuda.is_available():
            raise MissingBackendError(
                "torch has no usable CUDA device here (torch.cuda.is_available() is False)"
            )
        _check_precision(dtype, tf32, cuda, cuda_graph)
        if threads:
            torch.set_num_threads(threads)
        self.artifact = f"<{type(model).__name__}>"
        self.input_name, self.batch = "input", None
        self.dtype, self.tf32 = getattr(torch, DTYPES[dtype]), tf32
        self.memory_format = torch.channels_last if cuda else torch.contiguous_format
        if self.dtype != torch.float32:  # .to() casts in place: the caller's fp32 model stays fp32
            import copy

            model = copy.deepcopy(model)
        self.model = model.eval().to(device=device, dtype=self.dtype, memory_format=self.memory_format)
        self._fn = torch.compile(self.model) if compile else self.model
        self._torch = torch
        self._graphs: dict[tuple, tuple] = {} if cuda_graph else None

    def _math(self):
        """TF32 exactly when asked: PyTorch lets cuDNN use it by default, which would make an
        "fp32" row on an Ampere+ GPU a TF32 one."""
        torch = self._torch
        if self.device != "cuda":
            return torch.inference_mode()
        torch.backends.cuda.matmul.allow_tf32 = self.tf32
        return torch.backends.cudnn.flags(enabled=True, benchmark=True, allow_tf32=self.tf32)

    def _prepare(self, x):
        return x.to(self.device, dtype=self.dtype).contiguous(memory_format=self.memory_format)

    def run(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        dev = self._prepare(torch.from_numpy(np.ascontiguousarray(x)))
        y = self.run_device(dev)
        return y.float().cpu().numpy()  # .cpu() waits for the device, so timing includes the work

    def run_device(self, x_dev):
        """Output tensor left on the device (for timing kernels apart from copies)."""
        x_dev = self._prepare(x_dev)
        if self._graphs is not None:
            return self._replay(x_dev)
        with self._math(), self._torch.inference_mode():
            y = self._fn(x_dev)
        return y["out"] if isinstance(y, dict) else y

    def _replay(self, x_dev):
        """The forward captured once per input shape in a CUDA graph, then replayed: one launch
        instead of one per kernel, which is what small batches are bound by."""
        torch = self._torch
        key = tuple(x_dev.shape)
        if key not in self._graphs:
            static_in = x_dev.clone()
            with self._math(), torch.no_grad():
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(3):  # warm-up on a side stream, as capture requires
                        self._fn(static_in)
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    out = self._fn(static_in)
            out = out["out"] if isinstance(out, dict) else out
            self._graphs[key] = (graph, static_in, out)
        graph, static_in, out = self._graphs[key]
        static_in.copy_(x_dev)
        graph.replay()
        return out

    def versions(self) -> dict[str, str]:
        return {"torch": self._torch.__version__}


def _check_precision(dtype: str, tf32: bool, cuda: bool, cuda_graph: bool) -> None:
    if dtype not in DTYPES:
        raise BadArgumentError(f"torch runs {', '.join(DTYPES)}, not {dtype}")
    if cuda_graph and not cuda:
        raise BadArgumentError("--cuda-graph needs --device cuda")
    if cuda:
        return
    if tf32:
        raise BadArgumentError("tf32 is a CUDA math mode: use --device cuda (or fp32 on the CPU)")
    if dtype == "float16":
        raise BadArgumentError(
            "fp16 in PyTorch needs --device cuda (on the CPU it is emulated, slower than fp32); "
            "fp16 artifacts run in onnxruntime and openvino"
        )
    if dtype == "bfloat16" and not cpu_has_bf16():
        raise BadArgumentError(
            "this CPU has no native bf16 (AVX512-BF16 or AMX): PyTorch would emulate it, slower than fp32"
        )
