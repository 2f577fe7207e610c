"""Fine-tuning a pretrained backbone against training from scratch, at the same budget, on a small
folder of the user's own classes.

    .venv/bin/python benchmarks/finetune_vs_scratch.py [--model resnet18] [--per-class 30] [--epochs 4]

No ImageNet weights can be downloaded here, so the "pretrained" backbone is trained in this run on
other classes of the bundled digits (0-4, the whole train split of them), and the user's task is
digits 5, 6 and 7: a folder of `--per-class` training images each (from the train split), scored on
a separate folder of 100 test images each (from the test split, never seen by either run). Both
runs then get the same epochs, batch, learning rate and seed through `train_model`; the fine-tuned
one starts from the backbone with a fresh 3-class head (`reset_head`). Prints both test top-1.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path


def folder(root: Path, images, labels, classes, per_class: int) -> Path:
    from PIL import Image

    for c in classes:
        (root / f"digit{c}").mkdir(parents=True)
        for i, img in enumerate(images[labels == c][:per_class]):
            Image.fromarray(img).save(root / f"digit{c}" / f"{i}.png")
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--pretrain-epochs", type=int, default=2)
    parser.add_argument("--input-size", type=int, default=32)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from edgecnn.data.digits import TRAIN_SIZE, _raw
    from edgecnn.train import TrainOptions
    from edgecnn.train.api import save_weights, train_model

    images, labels = _raw()
    train_x, train_y = images[:TRAIN_SIZE], labels[:TRAIN_SIZE]
    test_x, test_y = images[TRAIN_SIZE:], labels[TRAIN_SIZE:]
    size = (args.input_size, args.input_size)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        source = folder(work / "pretrain", train_x, train_y, range(5), 10_000)
        mine = folder(work / "mine", train_x, train_y, (5, 6, 7), args.per_class)
        held_out = folder(work / "test", test_x, test_y, (5, 6, 7), 100)
        opts = TrainOptions(epochs=args.pretrain_epochs, batch_size=64, lr=0.05, seed=0)
        backbone, _, _ = train_model(args.model, str(source), opts, input_size=size)
        weights = save_weights(backbone.module, work / "backbone.safetensors", force=True)
        budget = TrainOptions(epochs=args.epochs, batch_size=16, lr=0.01, seed=0)
        top1, test_set = {}, ""
        for name, start in (("from scratch", None), ("fine-tuned", str(weights))):
            # the same held-out folder is the test set of both (--test-data), never their validation
            loaded, _, top1[name] = train_model(
                args.model, str(mine), budget, input_size=size, weights=start, test_data=str(held_out)
            )
            test_set = loaded.recipe["trained"]["test_set"]
    print(
        f"{args.model} at {size[0]}x{size[1]}, digits 5/6/7 with {args.per_class} training images each, "
        f"{args.epochs} epochs, batch 16, lr 0.01; test: {test_set} (digits' test split)"
    )
    for name, value in top1.items():
        print(f"  {name:13s} test top-1 {value:6.2f}%")
    print(f"  fine-tuned - scratch: {top1['fine-tuned'] - top1['from scratch']:+.2f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
