"""KxK conv -> 1x1 (C->R1) -> KxK (R1->R2) -> 1x1 (R2->N), from the trained kernel by Tucker-2.

Kim et al. (ICLR 2016): the leading left singular vectors of the kernel's output-channel unfolding
(N x C*K*K) and input-channel unfolding (C x N*K*K) give the two 1x1 convs; projecting the kernel
onto them gives the R2 x R1 x K x K core (HOSVD). Full ranks (R1 = C, R2 = N) reproduce the conv.
"""

from __future__ import annotations

import math

from edgecnn.transforms.base import (
    LayerChange,
    Swap,
    SwapOptions,
    TransformReport,
    rank_for_energy,
    round_rank,
)


def _build(conv, ranks):
    from torch import nn

    r1, r2 = (int(r) for r in ranks)
    kw = dict(device=conv.weight.device, dtype=conv.weight.dtype)
    return nn.Sequential(
        nn.Conv2d(conv.in_channels, r1, 1, bias=False, **kw),
        nn.Conv2d(
            r1,
            r2,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            bias=False,
            padding_mode=conv.padding_mode,
            **kw,
        ),
        nn.Conv2d(r2, conv.out_channels, 1, bias=conv.bias is not None, **kw),
    )


def _rank(size: int, singular, options: SwapOptions) -> int:
    """Rank for a mode of `size` channels, capped by the unfolding's rank (len(singular)): a 3->64 stem
    conv has only 3*K*K output-mode singular vectors, and that many already reproduce it exactly."""
    if options.rank_ratio is not None:
        return round_rank(round(options.rank_ratio * size), options, len(singular))
    return round_rank(rank_for_energy(singular**2, options.energy), options, len(singular))


def _left_singular(a):
    """Left singular vectors and values of a wide matrix via the eigenvectors of its Gram matrix.

    HOSVD needs only these; an eigendecomposition of the (rows x rows) Gram matrix costs far less than
    a full SVD of a 1024 x 9216 unfolding, and float64 keeps it accurate. Values are capped at the
    matrix rank (min of its sides), as a thin SVD would return.
    """
    import torch

    evals, evecs = torch.linalg.eigh(a @ a.T)
    order = torch.argsort(evals, descending=True)[: min(a.shape)]
    return evecs[:, order], evals[order].clamp_min(0).sqrt()


def _decompose(conv, options: SwapOptions):
    import torch

    w = conv.weight.detach().to(torch.float64)
    n, c = w.shape[:2]
    u_out, s_out = _left_singular(w.reshape(n, -1))
    u_in, s_in = _left_singular(w.permute(1, 0, 2, 3).reshape(c, -1))
    if options.exact is not None:
        r1, r2 = (min(r, len(s)) for r, s in zip(options.exact, (s_in, s_out), strict=True))
    else:
        r2, r1 = _rank(n, s_out, options), _rank(c, s_in, options)
    u_out, u_in = u_out[:, :r2], u_in[:, :r1]
    core = torch.einsum("nchw,nr,cs->rshw", w, u_out, u_in)
    approx = torch.einsum("rshw,nr,cs->nchw", core, u_out, u_in)
    norm = w.norm()
    err = float((w - approx).norm() / norm) if norm > 0 else 0.0
    return r1, r2, err, u_in.T[..., None, None], core, u_out[..., None, None]


def _plan(name, conv, options: SwapOptions, in_hw: int, out_hw: int):
    r1, r2, err, first, core, last = _decompose(conv, options)
    n, c = conv.out_channels, conv.in_channels
    k = math.prod(conv.kernel_size)
    bias = n if conv.bias is not None else 0
    change = LayerChange(
        name, "bottleneck", tuple(conv.kernel_size), c, n, (r1, r2), err,
        macs_before=out_hw * n * c * k, macs_after=in_hw * c * r1 + out_hw * (r1 * r2 * k + r2 * n),
        params_before=n * c * k + bias, params_after=c * r1 + r1 * r2 * k + r2 * n + bias,
    )  # fmt: skip
    return change, [r1, r2], (first, core, last)


def bottleneck(model, options: SwapOptions, *, example) -> tuple[object, TransformReport]:
    """Return (copy with eligible convs swapped, report)."""
    return SWAP.apply(model, options, example)


SWAP = Swap("bottleneck", _plan, _build)
replay = SWAP.replay
