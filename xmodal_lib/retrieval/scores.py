"""Score matrices and labels as the metric engine takes them: checks and label encoding.

Shared by the category-level metrics (:mod:`.metrics`) and the fine-grained ones (:mod:`.fg_metrics`).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["DEFAULT_CHUNK_ELEMENTS", "check_scores", "encode_labels", "chunk_rows"]

#: default number of score-matrix elements processed at once (queries per chunk = this // G)
DEFAULT_CHUNK_ELEMENTS = 1 << 24


def check_scores(scores: torch.Tensor) -> torch.Tensor:
    """A detached 2-D real-valued [Q, G] tensor with at least one query and one gallery item."""
    if not isinstance(scores, torch.Tensor):
        scores = torch.as_tensor(np.asarray(scores))
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-D [Q, G] matrix, got shape {tuple(scores.shape)}")
    if scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(f"scores must have at least one query and one gallery item, got {tuple(scores.shape)}")
    if not (scores.is_floating_point() or scores.dtype in (torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise ValueError(f"scores must be a real-valued tensor, got dtype {scores.dtype}")
    return scores.detach()


def encode_labels(query_labels, gallery_labels) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn query/gallery labels (ints, strings, arrays, tensors) into int64 tensors of one code space."""
    def _arr(x):
        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy()
        return np.asarray(list(x) if not isinstance(x, np.ndarray) else x)

    q, g = _arr(query_labels), _arr(gallery_labels)
    if q.ndim != 1 or g.ndim != 1:
        raise ValueError(f"labels must be 1-D, got query {q.shape} and gallery {g.shape}")
    if q.dtype.kind in "iub" and g.dtype.kind in "iub":
        return torch.as_tensor(q.astype(np.int64)), torch.as_tensor(g.astype(np.int64))
    _, inv = np.unique(np.concatenate([q.astype(object), g.astype(object)]).astype(str), return_inverse=True)
    inv = inv.astype(np.int64)
    return torch.as_tensor(inv[: len(q)]), torch.as_tensor(inv[len(q):])


def chunk_rows(n_gallery: int, chunk_size: int | None) -> int:
    """Queries per chunk: ``chunk_size``, or about :data:`DEFAULT_CHUNK_ELEMENTS` score elements."""
    if chunk_size is None:
        return max(1, DEFAULT_CHUNK_ELEMENTS // max(1, n_gallery))
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1 (queries per chunk), got {chunk_size}")
    return int(chunk_size)
