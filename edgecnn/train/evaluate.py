"""Top-1 of a torch model over a dataset, through the project's one accuracy count."""

from __future__ import annotations

from edgecnn.card import logits


def evaluate_top1(model, dataset, *, batch_size: int = 256, device: str = "cpu") -> float:
    """Top-1 (percent) of a torch model over a dataset, in eval mode; the model's mode is restored."""
    import torch

    from edgecnn.data.scoring import accuracy

    def predict(x):
        with torch.inference_mode():
            return logits(model(torch.from_numpy(x).to(device))).float().cpu().numpy()

    was_training = model.training
    model.eval().to(device)
    try:
        return accuracy(predict, dataset, batch=batch_size).top1
    finally:
        model.train(was_training)
