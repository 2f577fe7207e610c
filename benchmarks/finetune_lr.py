"""Which learning rate fine-tunes a 1000-class checkpoint on a small folder: `train --weights`'s default.

    .venv/bin/python benchmarks/finetune_lr.py [--lrs 0.05,0.02,0.01,0.005,0.002] [--size 64] [--big 224]

No ImageNet weights can be downloaded here, so the checkpoint is made in this run as a user's would
arrive: ResNet-18 with ImageNet's 1000-class head, trained on digits 0-4 (their whole train split),
saved as a plain .pth state dict. The user's folder: digits 5-9, 60 training images each (train
split); test: a folder of 100 test-split images each, the same 500 for every run. Each lr runs
`edgecnn train resnet18 --weights ckpt.pth` as a user types it (3 epochs, at each --batches, --size) and
with the docs' recipe (`--freeze-epochs 1 --backbone-lr-scale 0.1`); then `train`'s default lr
(no --lr) both ways at --big. Prints a table; results: benchmarks/results/finetune_lr.md and .json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from finetune_vs_scratch import folder
from strongest_baseline import machine, write_report

RECIPE = ("--freeze-epochs", "1", "--backbone-lr-scale", "0.1")


def make_checkpoint(work: Path, train_x, train_y, size: int) -> Path:
    """ResNet-18 with 1000 outputs trained 2 epochs on digits 0-4, as a plain state dict."""
    import torch

    from edgecnn.train import TrainOptions
    from edgecnn.train.api import train_model

    source = folder(work / "pretrain", train_x, train_y, range(5), 10_000)
    opts = TrainOptions(epochs=2, batch_size=64, lr=0.05, seed=0)
    model, _, top1 = train_model("resnet18", str(source), opts, input_size=(size, size))
    net = model.module
    head = torch.nn.Linear(net.fc.in_features, 1000)  # ImageNet's class count, the first 5 trained
    with torch.no_grad():
        head.weight.zero_(), head.bias.fill_(-10.0)
        head.weight[:5], head.bias[:5] = net.fc.weight, net.fc.bias
    net.fc = head
    path = work / "ckpt_1000.pth"
    torch.save(net.state_dict(), path)
    print(f"checkpoint: resnet18, 1000-class head, digits 0-4 test top-1 {top1:.2f}%", flush=True)
    return path


def _run(ckpt, mine, held_out, size: int, lr: float | None, recipe: bool, out: Path, batch: int) -> dict:
    args = [sys.executable, "-m", "edgecnn", "train", "resnet18", "--weights", str(ckpt), "--data", str(mine)]
    args += ["--test-data", str(held_out), "--input-size", str(size), "--epochs", "3"]
    args += ["--batch-size", str(batch)]
    args += ["-o", str(out), "--force", "--json", *(RECIPE if recipe else ())]
    args += ["--lr", str(lr)] if lr is not None else []
    t0 = time.time()
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    body = json.loads(done.stdout)
    row = {
        "size": size,
        "batch": batch,
        "lr": lr if lr is not None else "default",
        "recipe": recipe,
        "test_top1": body["test_top1"],
        "test_set": body["test_set"],
        "warned": "near chance" in done.stderr,
        "seconds": round(time.time() - t0),
    }
    print(json.dumps(row), flush=True)
    return row


def markdown(report: dict) -> str:
    lines = [f"Machine: {report['machine']}. Command: `{report['command']}`.", "", report["setup"], ""]
    lines += ["| size | batch | lr | recipe | test top-1 | warned at chance |", "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        recipe = "--freeze-epochs 1 --backbone-lr-scale 0.1" if r["recipe"] else "as typed"
        lines.append(
            f"| {r['size']} | {r['batch']} | {r['lr']} | {recipe} | {r['test_top1']:.2f} | {r['warned']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lrs", default="0.05,0.02,0.01,0.005,0.002")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--big", type=int, default=224, help="size of the default-lr runs (0: none)")
    parser.add_argument("--batches", default="64,16", help="--batch-size values, each with every lr")
    parser.add_argument("--out", default="benchmarks/results/finetune_lr")
    args = parser.parse_args()

    from edgecnn.data.digits import TRAIN_SIZE, _raw

    images, labels = _raw()
    train_x, train_y = images[:TRAIN_SIZE], labels[:TRAIN_SIZE]
    test_x, test_y = images[TRAIN_SIZE:], labels[TRAIN_SIZE:]
    command = " ".join(["benchmarks/finetune_lr.py", *sys.argv[1:]])
    report = {"machine": machine(), "command": command, "rows": []}
    print(report["machine"], flush=True)
    with tempfile.TemporaryDirectory(prefix="edgecnn-finetune-") as work:
        work = Path(work)
        ckpt = make_checkpoint(work, train_x, train_y, args.size)
        mine = folder(work / "mine", train_x, train_y, range(5, 10), 60)
        held_out = folder(work / "test", test_x, test_y, range(5, 10), 100)
        report["setup"] = (
            "resnet18 checkpoint with a 1000-class head trained 2 epochs on digits 0-4 at "
            f"{args.size}x{args.size}; fine-tuned 3 epochs on digits 5-9, 60 training images each; test: "
            "the same test-split digits"
        )
        out = work / "m.safetensors"
        for batch in [int(x) for x in args.batches.split(",")]:
            for lr in [float(x) for x in args.lrs.split(",")]:
                for recipe in (False, True):
                    report["rows"].append(_run(ckpt, mine, held_out, args.size, lr, recipe, out, batch))
            for size in [args.big] if args.big else []:  # the default lr (no --lr) at the larger size
                for recipe in (False, True):
                    report["rows"].append(_run(ckpt, mine, held_out, size, None, recipe, out, batch))
        write_report(report, Path(args.out), markdown)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
