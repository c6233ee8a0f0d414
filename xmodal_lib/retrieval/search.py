"""Exact nearest-neighbour search over a gallery of embeddings, and a small persistent ``Gallery``.

Scores are always "larger = better": cosine similarity, dot product, or the *negative* Euclidean
distance for ``metric="euclidean"``. Work is chunked over queries so memory stays bounded by
``chunk_size x G``; everything runs on the device of the inputs (CPU or GPU).
Binary codes (``to_codes``, ``pack_bits``, ``hamming_distance``, ``hamming_scores_matmul``) live in
:mod:`xmodal_lib.retrieval.codes` and are re-exported here.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from xmodal_lib.data.index import DataError
from xmodal_lib.retrieval.codes import (
    hamming_distance,
    hamming_scores_matmul,
    hamming_topk,
    pack_bits,
    to_codes,
    unpack_bits,
)

__all__ = [
    "METRICS", "similarity", "topk", "Gallery", "Hits",
    "to_codes", "pack_bits", "unpack_bits", "hamming_distance", "hamming_scores_matmul", "hamming_topk",
]

METRICS = ("cosine", "dot", "euclidean")
_FORMAT = "xmodal-gallery"
_VERSION = 1


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


def _as_2d(x: torch.Tensor, name: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D [N, D], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float()
    return x


def prepare(x: torch.Tensor, metric: str) -> torch.Tensor:
    """Per-row preprocessing for ``metric``: L2 normalisation for cosine, float32 otherwise unchanged."""
    x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    return torch.nn.functional.normalize(x, dim=-1) if metric == "cosine" else x


def _scores_prepared(q: torch.Tensor, g: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "euclidean":
        return -torch.cdist(q, g)  # (q, G)
    return q @ g.T  # (q, G)


def similarity(q: torch.Tensor, g: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """Score matrix [Q, G] between query rows and gallery rows (larger = more similar).

    ``cosine``: dot product of L2-normalised rows; ``dot``: raw dot product;
    ``euclidean``: minus the Euclidean distance (same ranking as the distance, ascending).
    """
    _check_metric(metric)
    q, g = _as_2d(q, "q"), _as_2d(g, "g")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"embedding dims differ: q has {q.shape[1]}, g has {g.shape[1]}")
    return _scores_prepared(prepare(q, metric), prepare(g, metric).to(q.device), metric)


def iter_score_chunks(q: torch.Tensor, g: torch.Tensor, metric: str = "cosine", chunk_size: int | None = None,
                      device: str | torch.device | None = None):
    """Yield ``(start, scores [q, G])`` chunk by chunk without materialising the full [Q, G] matrix."""
    _check_metric(metric)
    q, g = _as_2d(q, "q"), _as_2d(g, "g")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"embedding dims differ: q has {q.shape[1]}, g has {g.shape[1]}")
    dev = torch.device(device) if device is not None else g.device
    gp = prepare(g.to(dev), metric)
    rows = chunk_size or max(1, (1 << 22) // max(1, g.shape[0]))
    if rows < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    for a in range(0, q.shape[0], rows):
        yield a, _scores_prepared(prepare(q[a:a + rows].to(dev), metric), gp, metric)


def topk(q: torch.Tensor, g: torch.Tensor, k: int, metric: str = "cosine", chunk_size: int | None = None,
         device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k gallery items per query: ``(scores [Q, k], indices [Q, k])``, best first.

    A 1-D ``q`` [D] gives 1-D outputs [k]. ``k`` larger than the gallery is clamped to G.
    Inside the returned list equal scores are ordered by gallery index; which of several items
    tied exactly at the k-th score is kept is up to ``torch.topk``.
    """
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    single = torch.as_tensor(q).ndim == 1
    q2 = torch.as_tensor(q)[None] if single else q
    k = min(int(k), torch.as_tensor(g).shape[0])
    vals, idxs = [], []
    for _, s in iter_score_chunks(q2, g, metric, chunk_size, device):
        v, i = torch.topk(s, k, dim=1, largest=True, sorted=True)  # (q, k)
        # deterministic order inside ties: by index, then stable by score
        io = torch.sort(i, dim=1).indices
        v, i = v.gather(1, io), i.gather(1, io)
        so = torch.sort(v, dim=1, descending=True, stable=True).indices
        vals.append(v.gather(1, so))
        idxs.append(i.gather(1, so))
    v, i = torch.cat(vals), torch.cat(idxs)
    return (v[0], i[0]) if single else (v, i)


class Hits(NamedTuple):
    """Answer of :meth:`Gallery.query`: scores, gallery indices and ids (nested per query for 2-D input)."""
    scores: torch.Tensor
    indices: torch.Tensor
    ids: list


@dataclass
class Gallery:
    """Gallery embeddings [N, D] with string ids (and optional labels), searchable and persistent.

    ``save(path)`` writes ``<path>.safetensors`` (the embeddings) and ``<path>.json`` (ids, labels,
    metric); ``Gallery.load(path)`` reads them back without executing anything (no pickle).
    """
    embeddings: torch.Tensor
    ids: list[str]
    labels: list[str] | None = None
    metric: str = "cosine"

    def __post_init__(self) -> None:
        _check_metric(self.metric)
        self.embeddings = _as_2d(self.embeddings, "embeddings").detach()
        self.ids = [str(i) for i in self.ids]
        if len(self.ids) != self.embeddings.shape[0]:
            raise ValueError(f"ids has {len(self.ids)} entries, embeddings has {self.embeddings.shape[0]} rows")
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("ids must be unique")
        if self.labels is not None:
            self.labels = [str(x) for x in self.labels]
            if len(self.labels) != len(self.ids):
                raise ValueError(f"labels has {len(self.labels)} entries, expected {len(self.ids)}")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def query(self, x: torch.Tensor, k: int = 10, chunk_size: int | None = None) -> Hits:
        """Top-k gallery items for one embedding [D] (flat ids) or a batch [Q, D] (ids per query)."""
        x = torch.as_tensor(x)
        if x.shape[-1] != self.dim:
            raise ValueError(f"query dim {x.shape[-1]} does not match gallery dim {self.dim}")
        s, i = topk(x.to(self.embeddings.device), self.embeddings, k, self.metric, chunk_size)
        if i.ndim == 1:
            ids = [self.ids[j] for j in i.tolist()]
        else:
            ids = [[self.ids[j] for j in row] for row in i.tolist()]
        return Hits(s, i, ids)

    @staticmethod
    def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
        p = Path(path)
        base = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
        return base.with_name(base.name + ".safetensors"), base.with_name(base.name + ".json")

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``<path>.safetensors`` + ``<path>.json`` atomically; returns the .safetensors path."""
        st, js = self._paths(path)
        st.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": _FORMAT, "version": _VERSION, "metric": self.metric, "n": len(self),
                "dim": self.dim, "ids": self.ids, "labels": self.labels}
        tmp_st, tmp_js = st.with_name(st.name + ".tmp"), js.with_name(js.name + ".tmp")
        save_file({"embeddings": self.embeddings.cpu().contiguous()}, str(tmp_st))
        tmp_js.write_text(json.dumps(meta))
        os.replace(tmp_st, st)
        os.replace(tmp_js, js)
        return st

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "Gallery":
        """Read a gallery written by :meth:`save`; bad or mismatching files raise ``DataError``."""
        st, js = cls._paths(path)
        for f in (st, js):
            if not f.is_file():
                raise DataError(f"{f}: gallery file missing (expected {st.name} + {js.name})")
        try:
            meta = json.loads(js.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{js}: not valid JSON ({e})") from e
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise DataError(f"{js}: expected a JSON object with format={_FORMAT!r}")
        try:
            tensors = load_file(str(st), device=str(device))
        except (SafetensorError, OSError, ValueError) as e:
            raise DataError(f"{st}: not a readable safetensors file ({e})") from e
        if "embeddings" not in tensors:
            raise DataError(f"{st}: no 'embeddings' tensor")
        emb = tensors["embeddings"]
        ids = meta.get("ids")
        if not isinstance(ids, list) or len(ids) != emb.shape[0]:
            raise DataError(f"{js}: 'ids' must list {emb.shape[0]} ids (one per embedding row)")
        try:
            return cls(emb, ids, meta.get("labels"), meta.get("metric", "cosine"))
        except ValueError as e:
            raise DataError(f"{js}: {e}") from e
