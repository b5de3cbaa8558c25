"""Stain maths on batched pixel tensors: optical density, masked quantiles, 2-stain lasso.

Everything here is a pure function of torch tensors shaped ``(N, P, ...)``: N images (tiles),
P pixels each. The conventions follow staintools so that the batched normalisers reproduce it:
optical density ``OD = -ln(I / 255)`` with 0 read as 1 and OD floored at 1e-6, and 8-bit
reconstruction by truncation (``astype(uint8)``), not rounding.
"""

from __future__ import annotations

import functools
import math

import torch

OD_FLOOR = 1e-6
"""Smallest optical density staintools keeps (so white pixels never give OD = 0)."""


@functools.cache
def _od_table(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    levels = torch.arange(256, dtype=torch.float64).clamp(min=1)
    return (-torch.log(levels / 255)).clamp(min=OD_FLOOR).to(device=device, dtype=dtype)


def rgb_to_od(rgb: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Optical density of uint8 RGB, as staintools' ``convert_RGB_to_OD``.

    Args:
        rgb: uint8 tensor ``(..., 3)``.
        dtype: floating dtype of the result.

    Returns:
        ``(..., 3)`` optical densities >= 1e-6; a 0 grey level is read as 1 (OD ~ 5.54).
    """
    table = _od_table(rgb.device, dtype)
    return table.index_select(0, rgb.reshape(-1).int()).view(rgb.shape)


def od_to_rgb(od: torch.Tensor) -> torch.Tensor:
    """uint8 RGB ``floor(255 * exp(-OD))``, clamped to [0, 255] (staintools truncates too).

    ``od`` is consumed (overwritten in place) to save memory on large batches.
    """
    return od.neg_().exp_().mul_(255).clamp_(0, 255).to(torch.uint8)


def masked_quantile(values: torch.Tensor, mask: torch.Tensor | None, q: float) -> torch.Tensor:
    """Per-row ``q``-quantile of the masked entries along dim 1, like ``np.percentile`` (linear).

    Only the ``k ~ q * P`` extreme values are needed, so this takes a ``topk`` instead of
    sorting every row; rows may hold different numbers of valid entries.

    Args:
        values: ``(N, P, ...)`` floats.
        mask: ``(N, P)`` bool, True for entries that count; None counts all.
        q: quantile in [0, 1].

    Returns:
        ``(N, ...)`` quantiles; NaN for rows with no valid entry.
    """
    if q > 0.5:  # the linear rule is symmetric: q of x is -(1 - q) of -x
        return -masked_quantile(-values, mask, 1.0 - q)
    n_rows, n_cols = values.shape[:2]
    if mask is None:
        count = torch.full((n_rows,), n_cols, device=values.device)
        filled = values
    else:
        count = mask.sum(dim=1)
        fill = torch.tensor(math.inf, dtype=values.dtype, device=values.device)
        shape = mask.shape + (1,) * (values.dim() - 2)
        filled = torch.where(mask.view(shape), values, fill)
    position = q * (count.clamp(min=1) - 1).to(values.dtype)
    k = min(n_cols, math.floor(q * (n_cols - 1)) + 2)
    smallest = torch.topk(filled, k, dim=1, largest=False, sorted=True).values
    below = position.floor().long()
    above = torch.minimum(below + 1, (count - 1).clamp(min=0))
    shape = (n_rows, 1) + (1,) * (values.dim() - 2)
    low = smallest.gather(1, below.view(shape).expand_as(smallest[:, :1]))
    high = smallest.gather(1, above.view(shape).expand_as(smallest[:, :1]))
    frac = (position - below.to(values.dtype)).view(shape)
    result = (low + frac * (high - low)).squeeze(1)
    empty = (count == 0).view((n_rows,) + (1,) * (values.dim() - 2))
    return result.masked_fill(empty, math.nan)


def tissue_covariance(od: torch.Tensor, tissue: torch.Tensor) -> torch.Tensor:
    """Sample covariance ``(N, 3, 3)`` of each tile's tissue OD (``np.cov`` of those pixels).

    Args:
        od: ``(N, P, 3)`` optical densities.
        tissue: ``(N, P)`` bool, the pixels that count (fewer than 2 give a zero matrix).
    """
    weight = tissue.to(od.dtype)[..., None]
    count = weight.sum(1)  # (N, 1)
    mean = (od * weight).sum(1) / count.clamp(min=1)
    # Centre before the product: raw second moments lose ~1e-5 relative in float32.
    centred = (od - mean[:, None]).mul_(weight)
    return centred.transpose(1, 2) @ centred / (count[..., None] - 1).clamp(min=1)


def spans_plane(eigenvalues: torch.Tensor, min_ratio: float = 1e-3) -> torch.Tensor:
    """True where ascending 3x3 covariance eigenvalues ``(N, 3)`` span a plane, not a line.

    One stain (or none: black, white, flat tiles) puts the tissue OD on a line; the second
    eigenvalue is then noise. Real H&E tiles have second/first ratios of ~0.02-0.2, a single
    synthetic stain with 8-bit noise ~5e-5.
    """
    return (eigenvalues[:, 2] > 0) & (eigenvalues[:, 1] > min_ratio * eigenvalues[:, 2])


def normalise_rows(matrix: torch.Tensor) -> torch.Tensor:
    """Scale the last-dim vectors of ``matrix`` to unit Euclidean norm (zero rows stay zero)."""
    return matrix / torch.linalg.vector_norm(matrix, dim=-1, keepdim=True).clamp(min=1e-12)


def hematoxylin_first(stains: torch.Tensor) -> torch.Tensor:
    """Order each ``(2, 3)`` stain matrix so the row with the larger red OD comes first.

    Haematoxylin absorbs red more than eosin does, which is how staintools labels the two rows.
    """
    swap = stains[..., 0, 0] < stains[..., 1, 0]
    return torch.where(swap[..., None, None], stains.flip(-2), stains)


def stain_concentrations(od: torch.Tensor, stains: torch.Tensor, lam: float) -> torch.Tensor:
    """Non-negative lasso concentrations of two stains, solved exactly per pixel.

    Solves ``min_c 0.5 * ||od - c @ stains||^2 + lam * sum(c)`` subject to ``c >= 0`` for every
    pixel: what staintools asks of ``spams.lasso(mode=2, pos=True)``. With two atoms the optimum
    is both stains active (a 2x2 solve), one stain active, or none, so the exact answer is the
    first feasible of these candidates; no iterations.

    Args:
        od: ``(N, P, 3)`` optical densities.
        stains: ``(N, 2, 3)`` or ``(2, 3)`` stain matrix, rows non-zero and not parallel.
        lam: L1 penalty (staintools uses 0.01).

    Returns:
        ``(N, P, 2)`` concentrations >= 0.
    """
    if stains.dim() == 2:
        stains = stains.expand(od.shape[0], 2, 3)
    gram = stains @ stains.transpose(1, 2)  # (N, 2, 2)
    sq = torch.diagonal(gram, dim1=1, dim2=2).clamp(min=1e-12)  # (N, 2) squared row norms
    det = (sq[:, 0] * sq[:, 1] - gram[:, 0, 1] ** 2).clamp(min=1e-12)
    inv_gram = torch.stack([gram[:, 1, 1], -gram[:, 0, 1], -gram[:, 1, 0], gram[:, 0, 0]], -1)
    inv_gram = inv_gram.view(-1, 2, 2) / det[:, None, None]
    # One product gives both candidates: one stain alone, c_k = (s_k . od - lam) / |s_k|^2
    # (first two columns), and both stains, c = G^-1 (S od - lam) (last two).
    weights = torch.cat([stains / sq[..., None], inv_gram @ stains], dim=1)  # (N, 4, 3)
    offsets = torch.cat([lam / sq, lam * inv_gram.sum(-1)], dim=1)  # (N, 4)
    proj = torch.baddbmm(-offsets[:, None, :], od, weights.transpose(1, 2))  # (N, P, 4)
    single, both = proj[..., :2].clamp(min=0), proj[..., 2:]
    # A lone stain's objective is -|s_k|^2 c_k^2 / 2: the larger |s_k| c_k wins.
    merit = single * sq.sqrt()[:, None, :]
    first_wins = merit[..., :1] >= merit[..., 1:]
    single = single * torch.cat([first_wins, ~first_wins], dim=-1)
    return torch.where((both > 0).all(-1, keepdim=True), both, single)
