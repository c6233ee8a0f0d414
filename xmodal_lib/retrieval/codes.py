"""Binary hash codes: sign codes, bit packing and Hamming distance by two exact paths.

* :func:`to_codes` maps real embeddings to ±1 (sign; exactly 0 maps to +1).
* :func:`pack_bits` stores ±1 codes as bits (+1 -> 1, most significant bit first, zero padding
  to a whole byte), ``uint8 [N, ceil(b / 8)]``.
* :func:`hamming_distance` XORs packed codes and counts bits with a 256-entry lookup table.
* :func:`hamming_scores_matmul` uses the identity ``hamming = (b - q . g) / 2`` on ±1 codes.

Both distance paths return identical int32 matrices (so identical rankings); smaller = closer,
i.e. pass ``largest=False`` to the metrics.
"""
from __future__ import annotations

import torch

__all__ = ["to_codes", "pack_bits", "unpack_bits", "hamming_distance", "hamming_scores_matmul", "hamming_topk"]

_POPCOUNT = torch.tensor([bin(i).count("1") for i in range(256)], dtype=torch.int32)
_BIT_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.int32)
_CHUNK_ELEMENTS = 1 << 23


def to_codes(x: torch.Tensor) -> torch.Tensor:
    """Sign codes: ``+1`` where ``x >= 0`` (zero -> +1), ``-1`` elsewhere; float32 [..., b]."""
    x = torch.as_tensor(x)
    if x.is_floating_point() and torch.isnan(x).any():
        raise ValueError("to_codes: input contains NaN")
    return torch.where(x >= 0, 1.0, -1.0).to(torch.float32)


def _check_codes(codes: torch.Tensor, name: str) -> torch.Tensor:
    codes = torch.as_tensor(codes)
    if codes.ndim != 2:
        raise ValueError(f"{name} must be 2-D [N, bits], got shape {tuple(codes.shape)}")
    if not bool(((codes == 1) | (codes == -1)).all()):
        raise ValueError(f"{name} must contain only +1/-1 (use to_codes first)")
    return codes


def pack_bits(codes: torch.Tensor) -> torch.Tensor:
    """Pack ±1 codes [N, b] into ``uint8 [N, ceil(b/8)]`` (+1 -> bit 1, MSB first, zero padding)."""
    codes = _check_codes(codes, "codes")
    n, b = codes.shape
    nbytes = (b + 7) // 8
    bits = torch.zeros(n, nbytes * 8, dtype=torch.int32, device=codes.device)
    bits[:, :b] = (codes > 0).to(torch.int32)
    bits = bits.view(n, nbytes, 8)  # (N, B, 8)
    return (bits * _BIT_WEIGHTS.to(codes.device)).sum(-1).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, n_bits: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: ``uint8 [N, B]`` -> float32 ±1 codes [N, n_bits]."""
    packed = torch.as_tensor(packed)
    if packed.dtype != torch.uint8 or packed.ndim != 2:
        raise ValueError(f"packed must be uint8 [N, B], got {packed.dtype} {tuple(packed.shape)}")
    if not 0 < n_bits <= packed.shape[1] * 8:
        raise ValueError(f"n_bits must be in 1..{packed.shape[1] * 8}, got {n_bits}")
    w = _BIT_WEIGHTS.to(packed.device)
    bits = (packed.to(torch.int32)[:, :, None] & w) > 0  # (N, B, 8)
    return torch.where(bits.reshape(packed.shape[0], -1)[:, :n_bits], 1.0, -1.0)


def hamming_distance(q_packed: torch.Tensor, g_packed: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """Hamming distances ``int32 [Q, G]`` between packed codes (XOR + popcount lookup table).

    ``chunk_size`` = queries per chunk (default keeps the ``q x G x B`` XOR buffer near 8M bytes).
    """
    for name, t in (("q_packed", q_packed), ("g_packed", g_packed)):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8 or t.ndim != 2:
            raise ValueError(f"{name} must be a uint8 [N, B] tensor from pack_bits")
    if q_packed.shape[1] != g_packed.shape[1]:
        raise ValueError(f"code lengths differ: {q_packed.shape[1]} vs {g_packed.shape[1]} bytes")
    qn, nb = q_packed.shape
    gn = g_packed.shape[0]
    rows = chunk_size or max(1, _CHUNK_ELEMENTS // max(1, gn * nb))
    lut = _POPCOUNT.to(q_packed.device)
    out = torch.empty(qn, gn, dtype=torch.int32, device=q_packed.device)
    for a in range(0, qn, rows):
        x = torch.bitwise_xor(q_packed[a:a + rows, None, :], g_packed[None, :, :])  # (q, G, B)
        out[a:a + rows] = lut[x.to(torch.int32)].sum(-1, dtype=torch.int32)
    return out


def hamming_scores_matmul(q_codes: torch.Tensor, g_codes: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """Hamming distances ``int32 [Q, G]`` from ±1 codes via ``(b - q . g) / 2`` (exact in float32)."""
    q = _check_codes(q_codes, "q_codes").to(torch.float32)
    g = _check_codes(g_codes, "g_codes").to(torch.float32)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"code lengths differ: {q.shape[1]} vs {g.shape[1]} bits")
    b = q.shape[1]
    if b >= 1 << 24:
        raise ValueError("codes longer than 2**24 bits are not exact in float32")
    rows = chunk_size or max(1, _CHUNK_ELEMENTS // max(1, g.shape[0]))
    out = torch.empty(q.shape[0], g.shape[0], dtype=torch.int32, device=q.device)
    for a in range(0, q.shape[0], rows):
        dots = q[a:a + rows] @ g.T  # (q, G)
        out[a:a + rows] = torch.round((b - dots) / 2).to(torch.int32)
    return out


def hamming_topk(q_packed: torch.Tensor, g_packed: torch.Tensor, k: int,
                 chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest gallery codes per query: ``(distances int32 [Q, k], indices int64 [Q, k])``.

    Ties are ordered by gallery index (stable sort), so the result is deterministic.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(int(k), g_packed.shape[0])
    gn = g_packed.shape[0]
    rows = chunk_size or max(1, (1 << 20) // max(1, gn))
    ds, ix = [], []
    for a in range(0, q_packed.shape[0], rows):
        d = hamming_distance(q_packed[a:a + rows], g_packed)  # (q, G)
        order = torch.sort(d, dim=1, stable=True).indices[:, :k]
        ds.append(d.gather(1, order))
        ix.append(order)
    return torch.cat(ds), torch.cat(ix)
