"""Make examples/mynet.onnx: a graph edgecnn did not write, for the docs' ONNX examples.

    .venv/bin/python examples/mynet_onnx.py

Trains `mynet.py:build` (width 8, grey 28x28 input) on the bundled digits for 3 epochs with
edgecnn, then exports it with torch.onnx.export itself (dynamic batch axis, input named "image", no
edgecnn manifest), as a deployment engineer would receive it. Its normalisation is the builder's
card's (ImageNet's statistics averaged to grey): --mean 0.449 --std 0.226.
"""

from pathlib import Path

import torch

from edgecnn.train import TrainOptions
from edgecnn.train.api import train_model

HERE = Path(__file__).parent


def main() -> None:
    options = TrainOptions(epochs=3, lr=0.05, seed=0)
    builder = f"{HERE / 'mynet.py'}:build"
    loaded, _, top1 = train_model(
        builder, "digits", options, input_size=(28, 28), model_kwargs={"width": 8, "in_chans": 1}
    )
    net = loaded.module.eval()
    path = HERE / "mynet.onnx"
    torch.onnx.export(
        net,
        (torch.zeros(1, 1, 28, 28),),
        str(path),
        input_names=["image"],
        output_names=["scores"],
        dynamic_axes={"image": {0: "batch"}, "scores": {0: "batch"}},
        dynamo=False,
    )
    card = loaded.card
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} KB); test top-1 {top1:.2f}% on the digits")
    print(f"its preprocessing: --mean {card.mean[0]:.3f} --std {card.std[0]:.3f}")


if __name__ == "__main__":
    main()
