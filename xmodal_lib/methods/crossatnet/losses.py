"""CrossATNet losses (pure tensor functions): cross-modal triplet with in-batch mining, semantic
alignment to graph-CNN class nodes, attention agreement, hash quantisation and bit balance.

Our reading of the abstract (no official code exists; see methods_spec §2):

* **Cross-modal triplet.** Anchor = sketch ``s_i``; positive = the photo ``p_i`` paired with it in
  the batch (same class); negative = a photo ``p_j`` of another class chosen in the batch by
  ``mining``: ``"random"`` (uniform over valid negatives), ``"hard"`` (closest negative),
  ``"semi-hard"`` (closest negative that is still farther than the positive, FaceNet-style;
  when an anchor has none, its hardest negative). The symmetric photo-anchored form (anchor
  ``p_i``, positive ``s_i``, negative sketch ``s_j``) is added and the two are averaged.
  Distances are Euclidean (``p=2``) via :func:`xmodal_lib.losses.triplet.triplet_loss`; callers
  pass L2-normalised embeddings so the margin lives on the unit sphere. Anchors without any
  negative in the batch (all one class) are dropped.
* **Semantic alignment.** Each embedding is classified against the graph-CNN outputs of the seen
  classes with a cosine softmax (temperature ``tau``): ``CE(cos(z, g_c) / tau, y)``. This pulls
  sketch and photo embeddings towards their class node while the GCN learns where to put it.
* **Attention agreement.** ``KL(a_guided || a_self)`` between the sketch-guided attention over
  photo positions (teacher, gradient stopped) and the photo's own attention (student).
* **Hashing.** ``quantization_loss = mean ||tanh(h) - sign(h)||^2 / b`` and
  ``bit_balance_loss = mean_b (mean_batch tanh(h))^2`` (each bit ~ half +1, half -1).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from xmodal_lib.losses.triplet import triplet_loss

MINING = ("random", "hard", "semi-hard")


def mine_negatives(anchor: Tensor, positive: Tensor, candidates: Tensor, labels: Tensor,
                   mining: str = "hard", generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Index of one in-batch negative per anchor.

    Args:
        anchor, positive: [B, D]; row i of ``positive`` is anchor i's positive.
        candidates: [B, D] negatives pool (the other modality); ``labels`` [B] is the class of row i
            of both ``anchor`` and ``candidates`` (pairs share a class).
    Returns:
        ``(neg_index [B] long, valid [B] bool)``; ``valid`` is False for anchors with no other-class
        candidate (their index is meaningless).
    """
    if mining not in MINING:
        raise ValueError(f"mining must be one of {MINING}, got {mining!r}")
    with torch.no_grad():
        neg_mask = labels[:, None] != labels[None, :]  # (B, B) True where a valid negative
        valid = neg_mask.any(dim=1)
        d_an = torch.cdist(anchor.float(), candidates.float())  # (B, B)
        if mining == "random":
            r = torch.rand(d_an.shape, generator=generator, device=anchor.device) if generator is None \
                else torch.rand(d_an.shape, generator=generator).to(anchor.device)
            idx = torch.where(neg_mask, r, torch.full_like(r, -1.0)).argmax(dim=1)
        else:
            inf = torch.full_like(d_an, float("inf"))
            hard = torch.where(neg_mask, d_an, inf)
            idx = hard.argmin(dim=1)
            if mining == "semi-hard":
                d_ap = (anchor.float() - positive.float()).norm(dim=1, keepdim=True)  # (B, 1)
                semi = torch.where(neg_mask & (d_an > d_ap), d_an, inf)
                has = torch.isfinite(semi).any(dim=1)
                idx = torch.where(has, semi.argmin(dim=1), idx)
    return idx, valid


def cross_modal_triplet(sketch: Tensor, photo: Tensor, labels: Tensor, margin: float = 0.2,
                        mining: str = "hard", symmetric: bool = True,
                        generator: torch.Generator | None = None) -> Tensor:
    """Cross-modal triplet loss over a batch of (sketch_i, photo_i, label_i) pairs.

    ``sketch``/``photo`` [B, D] (row i of each belongs to class ``labels[i]``). Returns the mean of
    the sketch-anchored loss and (if ``symmetric``) the photo-anchored loss; 0 (with gradient
    graph) when no anchor has a negative.
    """
    if sketch.shape != photo.shape or sketch.shape[0] != labels.shape[0]:
        raise ValueError(f"cross_modal_triplet: shapes {tuple(sketch.shape)}, {tuple(photo.shape)}, "
                         f"labels {tuple(labels.shape)} do not match")
    terms = []
    pairs = [(sketch, photo)] + ([(photo, sketch)] if symmetric else [])
    for anc, pos in pairs:
        idx, valid = mine_negatives(anc, pos, pos, labels, mining, generator)
        if valid.any():
            terms.append(triplet_loss(anc[valid], pos[valid], pos[idx[valid]], margin=margin))
        else:
            terms.append((anc.sum() + pos.sum()) * 0.0)
    return torch.stack(terms).mean()


def semantic_alignment_loss(emb: Tensor, labels: Tensor, class_nodes: Tensor, tau: float = 0.1) -> Tensor:
    """Cosine-softmax cross-entropy of ``emb`` [B, D] against class nodes [C, D] (labels in [0, C))."""
    logits = F.normalize(emb, dim=-1) @ F.normalize(class_nodes, dim=-1).T / tau  # (B, C)
    return F.cross_entropy(logits, labels)


def attention_agreement_loss(guided: Tensor, own: Tensor, eps: float = 1e-8) -> Tensor:
    """``KL(guided || own)`` per sample, batch mean; both [B, N] distributions over positions.

    ``guided`` is the teacher: its gradient is stopped here.
    """
    t = guided.detach().clamp_min(eps)
    return (t * (t.log() - own.clamp_min(eps).log())).sum(dim=-1).mean()


def quantization_loss(h: Tensor) -> Tensor:
    """``mean_i ||tanh(h_i) - sign(h_i)||^2 / b`` for pre-activation hash outputs ``h`` [B, b]."""
    return (torch.tanh(h) - torch.sign(h).detach()).pow(2).mean()


def bit_balance_loss(h: Tensor) -> Tensor:
    """``mean_b (mean_i tanh(h_ib))^2``: each bit should be +1 for half the batch."""
    return torch.tanh(h).mean(dim=0).pow(2).mean()
