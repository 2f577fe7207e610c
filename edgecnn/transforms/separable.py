"""KxK conv -> depthwise KxK (channel multiplier T) + pointwise 1x1, from the trained kernel.

Network Decoupling (Guo et al., BMVC 2018): for each input channel c, the (N x K*K) slice W[:, c] has
an SVD U S V^T; its T leading terms give T depthwise filters (rows of V^T) and their pointwise weights
(columns of U). Singular values are split as sqrt(S) on each side to keep both layers well scaled.
At T = K*K (or N when N < K*K) the swap is exact. MACs per output pixel drop from N*C*K*K to
C*T*(K*K + N), a reduction of K*K*N / (T*(K*K + N)).
"""

from __future__ import annotations

import math

from edgecnn.transforms.base import LayerChange, Swap, SwapOptions, TransformReport, rank_for_energy


def _build(conv, t: int):
    from torch import nn

    t = int(t)
    dw = nn.Conv2d(
        conv.in_channels,
        conv.in_channels * t,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.in_channels,
        bias=False,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    pw = nn.Conv2d(
        conv.in_channels * t,
        conv.out_channels,
        1,
        bias=conv.bias is not None,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    return nn.Sequential(dw, pw)


def _decompose(conv, options: SwapOptions):
    """(T, relative weight error, depthwise weight, pointwise weight) for one conv."""
    import torch

    w = conv.weight.detach().to(torch.float64)
    n, c, kh, kw = w.shape
    k = kh * kw
    u, s, vh = torch.linalg.svd(w.permute(1, 0, 2, 3).reshape(c, n, k), full_matrices=False)
    full = s.shape[1]  # min(N, K*K)
    sq = (s**2).sum(0)
    if options.exact is not None:
        (t,) = options.exact
    else:
        t = options.rank if options.rank is not None else rank_for_energy(sq, options.energy)
    t = min(t, full)
    err = math.sqrt(max(0.0, 1 - float(sq[:t].sum() / sq.sum()))) if sq.sum() > 0 else 0.0
    root = s[:, :t].sqrt()  # c x t
    dw = (vh[:, :t, :] * root[..., None]).reshape(c * t, 1, kh, kw)
    pw = (u[:, :, :t] * root[:, None, :]).permute(1, 0, 2).reshape(n, c * t, 1, 1)
    return t, err, dw, pw


def _plan(name, conv, options: SwapOptions, in_hw: int, out_hw: int):
    t, err, dw, pw = _decompose(conv, options)
    n, c = conv.out_channels, conv.in_channels
    k = math.prod(conv.kernel_size)
    bias = n if conv.bias is not None else 0
    change = LayerChange(
        name, "separable", tuple(conv.kernel_size), c, n, (t,), err,
        macs_before=out_hw * n * c * k, macs_after=out_hw * c * t * (k + n),
        params_before=n * c * k + bias, params_after=c * t * (k + n) + bias,
    )  # fmt: skip
    return change, t, (dw, pw)


def separable(model, options: SwapOptions, *, example) -> tuple[object, TransformReport]:
    """Return (copy with eligible convs swapped, report)."""
    return SWAP.apply(model, options, example)


SWAP = Swap("separable", _plan, _build)
replay = SWAP.replay
