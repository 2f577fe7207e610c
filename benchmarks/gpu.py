"""edgecnn's PyTorch CUDA rows against plain PyTorch at its best, measured in the same run.

The reference is what a careful user writes by hand: the model in the precision, channels_last, the
forward captured in a CUDA graph, timed with CUDA events on an input already on the GPU. edgecnn's
rows come from `bench` (eager and `--cuda-graph`); their device time (`device_ms`, the same span the
reference times) is compared, and the end-to-end median with copies is shown beside it.

    python benchmarks/gpu.py                       # resnet50, resnet18, mobilenet_v2; batch 1 and 256
    python benchmarks/gpu.py --models resnet50 --batches 1 --precisions fp16,bf16 --seconds 2

Needs a CUDA GPU; writes benchmarks/results/gpu_<device>.md unless -o says otherwise.
"""

from __future__ import annotations

import argparse
import copy
import logging
import re
import statistics
import sys
import time
from pathlib import Path

DTYPES = {"fp32": "float32", "tf32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def reference_ms(model, batch: int, precision: str, size: int, seconds: float) -> float:
    """Median device milliseconds of one CUDA-graph replay of the forward."""
    import torch

    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True
    dtype = getattr(torch, DTYPES[precision])
    m = copy.deepcopy(model).cuda().eval().to(dtype=dtype, memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size, device="cuda", dtype=dtype).contiguous(
        memory_format=torch.channels_last
    )
    with torch.no_grad():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(5):
                m(x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            m(x)
    for _ in range(10):
        graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times: list[float] = []
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop or len(times) < 20:
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    del graph, m, x
    torch.cuda.empty_cache()
    return statistics.median(times)


def edgecnn_row(name: str, batch: int, precision: str, size: int, seconds: float, graph: bool) -> dict:
    from edgecnn.bench import BenchOptions, bench

    opts = BenchOptions(
        runtimes=("torch",),
        precisions=(precision,),
        device="cuda",
        batches=(batch,),
        input_size=(size, size),
        cuda_graph=graph,
        memory=False,
        warmup_s=1.0,
        min_seconds=seconds,
    )
    (row,) = bench([name], opts).rows
    if row.error:
        return {"error": row.error}
    return {"device_ms": row.latency.device_ms, "median_ms": row.latency.median_ms}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="resnet50,resnet18,mobilenet_v2")
    parser.add_argument("--batches", default="1,256")
    parser.add_argument("--precisions", default="fp32,tf32,fp16,bf16")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("-o", "--output", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    import torch

    if not torch.cuda.is_available():
        print("benchmarks/gpu.py needs a CUDA GPU (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    from edgecnn.zoo import load_model

    gpu = torch.cuda.get_device_name()
    lines = [
        f"# benchmarks/gpu.py on {gpu}, torch {torch.__version__}, {args.size}x{args.size}, random weights",
        "",
        "device ms per batch (CUDA events); reference: plain PyTorch, channels_last, CUDA graph.",
        "best / ref: edgecnn's best device time over the reference's (1.00 = as fast);",
        "e2e: edgecnn's graph row's median with the copies.",
        "",
        "| model | batch | precision | ref ms | eager ms | graph ms | best / ref | e2e ms | ref img/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = load_model(name).module
        for batch in map(int, args.batches.split(",")):
            for precision in args.precisions.split(","):
                ref = reference_ms(model, batch, precision, args.size, args.seconds)
                eager = edgecnn_row(name, batch, precision, args.size, args.seconds, graph=False)
                graph = edgecnn_row(name, batch, precision, args.size, args.seconds, graph=True)
                times = [r["device_ms"] for r in (eager, graph) if "device_ms" in r]
                best = min(times) if times else None
                head = f"| {name} | {batch} | {precision} | {ref:.3f} | {_ms(eager)} | {_ms(graph)} |"
                e2e = graph.get("median_ms")
                tail = (
                    f" {best / ref:.2f} | {e2e:.3f} | {batch / ref * 1000:,.0f} |"
                    if best and e2e
                    else " - | - | - |"
                )
                line = head + tail
                lines.append(line)
                print(line, flush=True)
    out = (
        args.output or Path(__file__).parent / "results" / f"gpu_{re.sub(r'[^a-z0-9]+', '_', gpu.lower())}.md"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0


def _ms(row: dict) -> str:
    return f"{row['device_ms']:.3f}" if "device_ms" in row else f"error: {row['error'][:40]}"


if __name__ == "__main__":
    sys.exit(main())
