"""INT8 Q/DQ agreement on a trained ResNet-50 (random weights make agreement checks moot).

    .venv/bin/python benchmarks/int8_agreement.py [--input-size 64] [--epochs 2]

Trains ResNet-50 on the bundled digits (train split), then runs what a user runs:
`edgecnn export resnet50 --weights W --num-classes 10 -t onnx,openvino --precision int8 --calib digits`
(calibration on train digits, checks on the calibration-free test digits), and prints size ratio,
top-1 agreement with PyTorch fp32 and the number of distinct reference classes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--out", default="benchmarks/results/int8_agreement_resnet50.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    from edgecnn.export import ExportOptions, export
    from edgecnn.train.api import reference_model

    size = (args.input_size, args.input_size)
    _, info = reference_model("resnet50", "digits", input_size=size, epochs=args.epochs, lr=args.lr)
    weights = info["weights"]
    print(
        f"resnet50 @ {size[0]}x{size[1]} trained {args.epochs} epochs on digits: "
        f"test top-1 {info['test_top1']:.2f}%"
    )
    report = {"test_top1": info["test_top1"], "input_size": list(size), "variants": {}}
    with tempfile.TemporaryDirectory() as work:
        common = dict(targets=("onnx", "openvino"), input_size=size, out_dir=Path(work) / "x", check_size=200)
        fp32 = export("resnet50", ExportOptions(**common), weights=weights, num_classes=10)
        variants = [("minmax", "s8"), ("percentile", "s8"), ("entropy", "s8"), ("minmax", "u8")]
        for method, act in variants:
            opts = ExportOptions(
                **common,
                precision="int8",
                calib="digits",
                calib_method=method,
                int8_activations=act,
                force=True,
            )
            int8 = export("resnet50", opts, weights=weights, num_classes=10)
            for f, q in zip(fp32.targets, int8.targets, strict=True):
                images = next(p for p in q.parity if p.inputs.startswith("images"))
                entry = {
                    "status": q.status,
                    "size_ratio": f.size_bytes / q.size_bytes if q.size_bytes else None,
                    "top1_agreement": images.top1_agreement,
                    "images": images.images,
                    "reference_classes": images.reference_classes,
                    "max_rel": images.max_rel,
                    "error": q.error,
                }
                report["variants"][f"{q.target} {method} {act}"] = entry
                ratio = f"{entry['size_ratio']:.2f}x smaller" if entry["size_ratio"] else "not written"
                print(
                    f"{q.target:9s} int8 {method:10s} {act}: {q.status} ({ratio}), top-1 agreement with "
                    f"PyTorch fp32 {images.top1_agreement:.3f} on {images.images} test digits spanning "
                    f"{images.reference_classes} classes, max rel err {images.max_rel:.3f}"
                )
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    default = [report["variants"][f"{t} minmax s8"] for t in ("onnx", "openvino")]
    ok = all(v["top1_agreement"] >= 0.95 and v["status"] == "ok" for v in default)
    print(f"default int8 (minmax, s8): top-1 agreement >= 0.95 in both runtimes: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
