"""Distillation losses: Hinton KD and per-layer feature reconstruction through forward hooks."""

from __future__ import annotations

from edgecnn.errors import BadArgumentError
from edgecnn.train.options import TrainOptions


class Features:
    """Forward hooks capturing outputs of the named layers (student swaps vs teacher originals)."""

    def __init__(self, model, names):
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise BadArgumentError(f"layer '{missing[0]}' not found for feature reconstruction")
        from contextlib import ExitStack

        from edgecnn.analysis import hooked

        self.outputs: dict = {}
        self.hooks = ExitStack()  # held for the whole training, not one forward pass
        self.hooks.enter_context(hooked(model, forward={n: self._hook(n) for n in names}))

    def _hook(self, name):
        def hook(module, args, out):
            self.outputs[name] = out

        return hook

    def remove(self):
        self.hooks.close()


def kd_loss(out, t_out, y, opts: TrainOptions):
    """Hinton KD: KL at temperature T (scaled by T^2) weighted alpha, plus (1 - alpha) cross-entropy."""
    import torch.nn.functional as F

    T = opts.temperature
    kd = F.kl_div(
        F.log_softmax(out / T, 1), F.log_softmax(t_out / T, 1), reduction="batchmean", log_target=True
    )
    return opts.alpha * kd * T * T + (1 - opts.alpha) * F.cross_entropy(out, y)


def feature_loss(s_feats: Features, t_feats: Features, layers: list[str]):
    """Mean over layers of the student/teacher output MSE, normalised by the teacher's energy."""
    import torch.nn.functional as F

    total = 0
    for n in layers:
        target = t_feats.outputs[n].detach()
        total = total + F.mse_loss(s_feats.outputs[n], target) / target.pow(2).mean().clamp_min(1e-8)
    return total / len(layers)
