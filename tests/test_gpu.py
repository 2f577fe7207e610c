"""The CUDA paths: PyTorch rows in every precision with the timing split and GPU peak memory,
training and distillation on the GPU. They skip, with the reason, where torch sees no CUDA device
(the CPU-only CI machine); `benchmarks/gpu.py` measures the same paths against plain PyTorch."""

from __future__ import annotations

import json

import pytest
import torch
from _cli import run_cli

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available())"),
]
QUICK = ("--duration", "0.2", "--warmup", "0.2", "--iterations", "10")


@pytest.mark.parametrize("graph", [False, True])
def test_torch_on_cuda_gives_a_row_per_precision_with_the_timing_split(tmp_path, graph):
    flags = ("--cuda-graph",) if graph else ()
    r = run_cli(
        *("bench", "resnet18", "-r", "torch", "--device", "cuda", "--precision", "fp32,tf32,fp16,bf16"),
        *("--batch", "1,8", *QUICK, *flags, "--json"),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["rows"]
    assert {(row["precision"], row["batch"]) for row in rows} == {
        (p, b) for p in ("fp32", "tf32", "fp16", "bf16") for b in (1, 8)
    }
    for row in rows:
        assert not row["error"], row["error"]
        lat = row["latency"]
        assert lat["median_ms"] > 0 and lat["device_ms"] > 0 and lat["h2d_ms"] >= 0 and lat["d2h_ms"] >= 0
        assert row["memory"]["peak_gpu_bytes"] > 0


def test_reduced_precision_on_cuda_agrees_with_fp32():
    import numpy as np

    from edgecnn.runtime.torch_runner import TorchRunner
    from edgecnn.zoo import load_model

    torch.manual_seed(0)
    model = load_model("resnet18").module
    x = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    ref = TorchRunner(model, device="cuda").run(x)
    for dtype, tf32, bound in (("float16", False, 2e-2), ("bfloat16", False, 5e-2), ("float32", True, 1e-2)):
        y = TorchRunner(model, device="cuda", dtype=dtype, tf32=tf32, cuda_graph=True).run(x)
        assert np.abs(y - ref).max() / np.abs(ref).max() < bound, dtype


def test_train_and_distill_on_cuda(tmp_path):
    out = tmp_path / "l.safetensors"
    r = run_cli("train", "lenet5", "--epochs", "1", "--device", "cuda", "--amp", "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["test_top1"] > 70
    r = run_cli(
        "convert",
        str(out),
        "--no-fold-bn",
        "--separable",
        "--rank",
        "2",
        "-o",
        str(tmp_path / "s.safetensors"),
    )
    assert r.returncode == 0, r.stderr
    r = run_cli(
        "distill", str(out), str(tmp_path / "s.safetensors"), "--epochs", "1", "--device", "cuda", "--json"
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["student_test_top1"] > 70


def test_ddp_takes_nccl_only_for_a_model_on_cuda():
    from edgecnn.train.ddp import DDP_BACKENDS

    assert DDP_BACKENDS["cuda"] == "nccl" and DDP_BACKENDS["cpu"] == "gloo"
