"""Embeddings computed once per image and model, cached on disk (safetensors, atomic writes).

Evaluation embeds the same gallery again and again (every notebook re-run, every metric, every
rerank depth). :func:`embed_records` embeds each image once per *model fingerprint* and keeps the
result in ``<cache_dir>/embeddings/<name>-<fingerprint>.safetensors``; later calls only embed
images the file does not hold yet.

* Keys: a record's path, size and modification time (:func:`record_key`), so an edited file is
  embedded again; for in-memory images :func:`embed_images` uses a hash of the pixels.
* Fingerprint: a hash of the model's parameters and buffers (:func:`model_fingerprint`) plus the
  image loader, the precision and a caller-chosen ``name`` (e.g. ``"zse/photo"``): other weights,
  preprocessing or precision never reuse stale vectors.
* Precision: ``"auto"`` = bf16 autocast on CUDA, fp32 on CPU; vectors are stored as float32.
* Files hold tensors only (``embeddings`` [N, D] float32 and the keys as UTF-8 JSON bytes); loading
  never executes code. Writes go to a temporary file that is renamed over the old one, so a crash
  leaves the previous complete file. Two processes writing the same file: the last one wins (no
  corruption, possibly re-embedding later).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from xmodal_lib.infra.devices import module_device

__all__ = ["model_fingerprint", "record_key", "EmbeddingCache", "embed_records", "embed_images", "resolve_precision"]

Encode = Callable[[Tensor], Tensor]


def model_fingerprint(model: nn.Module, extra: str = "") -> str:
    """SHA-1 over the class name and every parameter/buffer (name, shape, dtype, values) + ``extra``."""
    h = hashlib.sha1(type(model).__name__.encode())
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        t = t.detach()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}".encode())
        h.update(t.to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())  # 0-dim buffers too
    h.update(extra.encode())
    return h.hexdigest()


def record_key(record) -> str:
    """``path|size|mtime_ns`` of a record's file (stroke-pickle paths ``file#key`` use the pickle file)."""
    path = str(record.path)
    file = Path(path.split("#", 1)[0])
    try:
        st = file.stat()
    except OSError as e:
        from xmodal_lib.data.index import DataError  # lazy: only needed on this branch

        raise DataError(f"embed cache: cannot read {file} ({e})") from e
    return f"{path}|{st.st_size}|{st.st_mtime_ns}"


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` -> ``"bf16"`` on CUDA, ``"fp32"`` elsewhere; ``"bf16"``/``"fp32"`` pass through."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


class EmbeddingCache:
    """One cache file: key -> embedding row. ``lookup(keys)`` / ``update(keys, emb)``."""

    def __init__(self, name: str, fingerprint: str, root: str | Path | None = None) -> None:
        if not name or any(c in name for c in "\\:*?\"<>|"):
            raise ValueError(f"embed cache name must be a plain non-empty string, got {name!r}")
        if root is None:
            from xmodal_lib.infra.paths import cache_dir  # lazy: only needed on this branch

            root = cache_dir() / "embeddings"
        stem = name.replace("/", "__")
        self.path = Path(root) / f"{stem}-{fingerprint[:20]}.safetensors"
        self._keys: list[str] | None = None
        self._emb: Tensor | None = None

    def _load(self) -> None:
        if self._keys is not None:
            return
        self._keys, self._emb = [], None
        if self.path.is_file():
            from safetensors.torch import load_file  # lazy: only needed on this branch

            try:
                t = load_file(str(self.path))
                keys = json.loads(bytes(t["keys_json"].numpy()).decode("utf-8"))
                emb = t["embeddings"]
            except Exception as e:  # noqa: BLE001 - re-raised naming the file
                raise ValueError(f"{self.path}: not a valid embedding cache ({e}); delete it to rebuild") from e
            if emb.ndim != 2 or emb.shape[0] != len(keys):
                raise ValueError(f"{self.path}: {emb.shape[0]} rows for {len(keys)} keys; delete it to rebuild")
            self._keys, self._emb = keys, emb

    def __len__(self) -> int:
        self._load()
        return len(self._keys)

    def lookup(self, keys: Sequence[str]) -> dict[str, Tensor]:
        """Cached rows of those ``keys`` that are present (key -> [D] float32)."""
        self._load()
        pos = {k: i for i, k in enumerate(self._keys)}
        return {k: self._emb[pos[k]] for k in keys if k in pos}

    def update(self, keys: Sequence[str], emb: Tensor) -> None:
        """Add (or overwrite) rows and rewrite the file atomically."""
        self._load()
        emb = emb.detach().float().cpu()
        if emb.ndim != 2 or emb.shape[0] != len(keys):
            raise ValueError(f"update: {len(keys)} keys for embeddings of shape {tuple(emb.shape)}")
        if self._emb is not None and self._emb.shape[1] != emb.shape[1]:
            raise ValueError(f"update: dim {emb.shape[1]} differs from the cached dim {self._emb.shape[1]}")
        pos = {k: i for i, k in enumerate(self._keys)}
        new_keys = list(self._keys)
        rows = self._emb.clone() if self._emb is not None else emb.new_zeros(0, emb.shape[1])
        fresh = []
        for j, k in enumerate(keys):
            if k in pos:
                rows[pos[k]] = emb[j]
            elif k not in fresh:
                pos[k] = len(new_keys)
                new_keys.append(k)
                fresh.append(j)
        rows = torch.cat([rows, emb[fresh]]) if fresh else rows
        key_bytes = torch.frombuffer(bytearray(json.dumps(new_keys).encode("utf-8")), dtype=torch.uint8)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        try:
            save_file({"embeddings": rows.contiguous(), "keys_json": key_bytes.clone()}, tmp)
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self._keys, self._emb = new_keys, rows


def _device_of(encode: Encode, device: str | torch.device | None) -> torch.device:
    if device not in (None, "auto"):
        return torch.device(device)
    owner = getattr(encode, "__self__", None)
    if isinstance(owner, nn.Module) and next(owner.parameters(), None) is not None:
        return module_device(owner)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def _embed_batches(batches, encode: Encode, dev: torch.device, precision: str) -> Tensor:
    out = []
    for x in batches:
        x = x.to(dev, non_blocking=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            e = encode(x)  # (b, D)
        out.append(e.float().cpu())
    return torch.cat(out)


class _RecordImages(torch.utils.data.Dataset):
    def __init__(self, records, loader) -> None:
        self.records, self.loader = list(records), loader

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Tensor:
        return self.loader.load(self.records[i])


def embed_records(records: Sequence, loader, encode: Encode, *, name: str, fingerprint: str,
                  root: str | Path | None = None, batch_size: int = 64, num_workers: int = 0,
                  device: str | torch.device | None = None, precision: str = "auto") -> Tensor:
    """Embeddings ``[N, D]`` (float32, CPU) of ``records``, each image embedded at most once per model.

    Args:
        records: :class:`~xmodal_lib.data.index.Record` items; images come from ``loader.load``.
        encode: e.g. ``model.encode_photo`` (put the model in eval mode first); runs under no-grad.
        name: what is embedded (``"zse/photo"``); fingerprint: :func:`model_fingerprint` of the model.
        device: where ``encode`` runs (default: its module's device). precision: "auto" | "bf16" | "fp32".
    """
    dev = _device_of(encode, device)
    prec = resolve_precision(precision, dev)
    cache = EmbeddingCache(name, hashlib.sha1(f"{fingerprint}|{loader!r}|{prec}".encode()).hexdigest(), root)
    keys = [record_key(r) for r in records]
    have = cache.lookup(keys)
    todo = [i for i, k in enumerate(keys) if k not in have]
    if todo:
        dl = torch.utils.data.DataLoader(_RecordImages([records[i] for i in todo], loader), batch_size=batch_size,
                                         num_workers=num_workers, pin_memory=dev.type == "cuda")
        cache.update([keys[i] for i in todo], _embed_batches(dl, encode, dev, prec))
        have = cache.lookup(keys)
    if not keys:
        return torch.zeros(0, 0)
    return torch.stack([have[k] for k in keys])


def embed_images(images: Tensor, encode: Encode, *, name: str, fingerprint: str, keys: Sequence[str] | None = None,
                 root: str | Path | None = None, batch_size: int = 64, device: str | torch.device | None = None,
                 precision: str = "auto") -> Tensor:
    """Like :func:`embed_records` for preloaded images ``[N, 3, H, W]``; keys default to pixel hashes."""
    if images.ndim != 4:
        raise ValueError(f"images must be [N, 3, H, W], got shape {tuple(images.shape)}")
    if keys is None:
        keys = [hashlib.sha1(x.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest() for x in images]
    if len(keys) != images.shape[0]:
        raise ValueError(f"{len(keys)} keys for {images.shape[0]} images")
    dev = _device_of(encode, device)
    prec = resolve_precision(precision, dev)
    shape = "x".join(str(s) for s in images.shape[1:])
    cache = EmbeddingCache(name, hashlib.sha1(f"{fingerprint}|tensor{shape}|{prec}".encode()).hexdigest(), root)
    have = cache.lookup(keys)
    todo = [i for i, k in enumerate(keys) if k not in have]
    if todo:
        idx = torch.tensor(todo)
        batches = (images[idx[a:a + batch_size]] for a in range(0, len(todo), batch_size))
        cache.update([keys[i] for i in todo], _embed_batches(batches, encode, dev, prec))
        have = cache.lookup(keys)
    if not keys:
        return torch.zeros(0, 0)
    return torch.stack([have[k] for k in keys])
