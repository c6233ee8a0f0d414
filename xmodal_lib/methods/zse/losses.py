"""ZSE-SBIR losses (methods_spec.md §3.6): triplet on post-CA [Ret] tokens + MSE matching loss.

L = w_tri · L_tri + w_rn · L_rn with w_tri = 2, w_rn = 4 (the official weights, chosen so each
term starts near 1), where

* L_tri = mean_i max(0, ‖a_i − p_i‖₂ − ‖a_i − n_i‖₂ + 1): a = Ret_CA(sk⁺_i) and p = Ret_CA(ph⁺_i)
  from the positive pair (sk⁺_i, ph⁺_i), n = Ret_CA(ph⁻_i) from the negative pair (sk⁻_i, ph⁻_i);
  no L2 normalisation;
* L_rn = mean over the 2b pairs of (r − t)², t = 0.99 for positive and 0.01 for negative pairs.
"""
from __future__ import annotations

import torch
from torch import Tensor

from xmodal_lib.losses.triplet import triplet_loss

__all__ = ["matching_loss", "zse_loss"]


def matching_loss(score_pos: Tensor, score_neg: Tensor, pos_target: float = 0.99,
                  neg_target: float = 0.01) -> Tensor:
    """Mean squared error of relation scores (b,) to 0.99 (positive pairs) and 0.01 (negatives)."""
    scores = torch.cat([score_pos, score_neg])
    target = torch.cat([torch.full_like(score_pos, pos_target), torch.full_like(score_neg, neg_target)])
    return ((scores - target) ** 2).mean()


def zse_loss(ret_sk_pos: Tensor, ret_ph_pos: Tensor, ret_ph_neg: Tensor, score_pos: Tensor,
             score_neg: Tensor, w_tri: float = 2.0, w_rn: float = 4.0, margin: float = 1.0) -> dict[str, Tensor]:
    """Total ZSE loss; returns {"loss", "triplet", "matching"} (the last two unweighted)."""
    tri = triplet_loss(ret_sk_pos, ret_ph_pos, ret_ph_neg, margin=margin)
    rn = matching_loss(score_pos, score_neg)
    return {"loss": w_tri * tri + w_rn * rn, "triplet": tri.detach(), "matching": rn.detach()}
