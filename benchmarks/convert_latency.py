"""Where do fewer MACs give lower latency? Converted vs original, PyTorch eager on this CPU, same run.

    .venv/bin/python benchmarks/convert_latency.py                      # resnet18, resnet50, vgg16
    .venv/bin/python benchmarks/convert_latency.py --models resnet18 --weights resnet18=ckpt.pth

Each variant is timed batch 1 at the model's input size: warm-up, then `--iters` runs interleaved
across variants (so drift hits all alike), median reported. Random weights (no pretrained sets here)
have flat spectra, so energy-chosen ranks are much higher than on trained weights; the fixed-rank
rows show the structural trade-off independent of the weights.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from edgecnn.transforms import SwapOptions, convert
from edgecnn.zoo import get_spec, load_model


def _time(model, x, iters: int, warmup: int) -> list[float]:
    with torch.no_grad():
        for _ in range(warmup):
            model(x)
        out = []
        for _ in range(iters):
            t = time.perf_counter()
            model(x)
            out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet18", "resnet50", "vgg16"])
    ap.add_argument("--energies", nargs="+", type=float, default=[0.5, 0.9])
    ap.add_argument("--ranks", nargs="+", type=int, default=[2])
    ap.add_argument("--weights", nargs="*", default=[], help="MODEL=PATH pairs")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    weights = dict(w.split("=", 1) for w in args.weights)
    cpu = platform.processor() or platform.machine()
    print(f"# {cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(
        "| model | variant | swapped | GMACs | MACs reduction | median ms "
        "| latency ratio (conv/orig) | output rel err |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        loaded, spec = load_model(name, weights=weights.get(name)), get_spec(name)
        x = torch.randn(1, loaded.in_chans, *loaded.card.input_size)
        variants = {"original": (loaded.module, spec.macs, "-", 0.0)}
        folded = convert(loaded, fold_bn=True)
        variants["fold_bn"] = (folded.model, folded.macs_after, "-", folded.output_error)
        settings = [("separable", SwapOptions(energy=e), f"sep E={e}") for e in args.energies]
        settings += [("separable", SwapOptions(rank=r), f"sep T={r}") for r in args.ranks]
        settings += [("bottleneck", SwapOptions(energy=e), f"bot E={e}") for e in args.energies]
        for kind, options, label in settings:
            try:
                result = convert(loaded, **{kind: options})
            except Exception as e:  # e.g. no layer worth swapping at this energy: a row, not a crash
                print(f"| {name} | {label} | 0 | - | - | - | - | {str(e).split(';')[0]} |")
                continue
            swapped = len(result.reports[-1].changed)
            variants[label] = (result.model, result.macs_after, swapped, result.output_error)
        times: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(args.iters):  # interleave variants
            for label, (model, *_rest) in variants.items():
                times[label] += _time(model, x, 1, args.warmup if not times[label] else 0)
        base_ms = statistics.median(times["original"]) * 1e3
        for label, (_, macs, swapped, err) in variants.items():
            ms = statistics.median(times[label]) * 1e3
            print(
                f"| {name} | {label} | {swapped} | {macs / 1e9:.2f} | {spec.macs / macs:.2f}x | "
                f"{ms:.1f} | {ms / base_ms:.2f} | {err:.2e} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
