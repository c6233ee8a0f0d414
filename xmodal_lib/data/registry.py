"""``open_dataset``: one entry point for every dataset kind (re-exported by ``xmodal_lib.data``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from xmodal_lib.data.index import DataError, SBIRIndex
from xmodal_lib.data.manifest import read_manifest
from xmodal_lib.data.qmul import read_qmul_v1, read_qmul_v2, read_qmul_v2_pickle
from xmodal_lib.data.sake import read_sake
from xmodal_lib.data.sketchy import read_sketchy
from xmodal_lib.data.synthetic import SyntheticConfig, open_synthetic, open_synthetic_fg

KINDS: tuple[str, ...] = ("synthetic", "synthetic_fg", "sketchy", "sake", "qmul_v1", "qmul_v2",
                          "qmul_v2_pickle", "manifest")


def _synthetic_cfg(kw: dict[str, Any]) -> SyntheticConfig | None:
    cfg = kw.pop("config", None)
    fields = {k: kw.pop(k) for k in list(kw) if k in SyntheticConfig.__dataclass_fields__}
    if cfg is not None and fields:
        raise ValueError(f"open_dataset: pass either config= or SyntheticConfig fields, not both ({list(fields)})")
    if cfg is None and fields:
        cfg = SyntheticConfig(**fields)
    return cfg


def open_dataset(kind: str, root: str | Path | None = None, split: str | None = None, **kw: Any) -> SBIRIndex:
    """Read a dataset of ``kind`` into an :class:`SBIRIndex`.

    Args:
        kind: one of :data:`KINDS`.
            ``"synthetic"``: category-level zero-shot benchmark (generated on demand;
            ``config=SyntheticConfig(...)`` or its fields as keywords, e.g. ``seed=1``);
            ``"synthetic_fg"``: one fine-grained category (``category="shoe"|"chair"``);
            ``"sketchy"`` (``read_sketchy``), ``"sake"`` (``read_sake``), ``"qmul_v1"``,
            ``"qmul_v2"``, ``"qmul_v2_pickle"``, ``"manifest"`` (``root`` = the CSV file).
        root: dataset folder; ``None`` only for the synthetic kinds (the cache is used).
        split: ``"train"`` / ``"test"`` returns that subset; any other value is the zero-shot
            split of the reader: ``"zeroshot1"`` / ``"zeroshot0"`` for Sketchy, the split folder
            for SAKE lists.
        **kw: passed to the reader (e.g. ``label=``, ``check_files=``, ``unseen=``).
    """
    if kind not in KINDS:
        raise ValueError(f"open_dataset(kind=...): expected one of {list(KINDS)}, got {kind!r}")
    subset = split if split in ("train", "test") else None
    zs = None if subset else split
    if kind.startswith("synthetic"):
        cfg = _synthetic_cfg(kw)
        if kind == "synthetic":
            if zs is not None:
                raise ValueError(f"open_dataset('synthetic', split={split!r}): expected None, 'train' or 'test'")
            idx = open_synthetic(cfg, root, **kw)
        else:
            idx = open_synthetic_fg(cfg, root, **kw)
    else:
        if root is None:
            raise DataError(f"open_dataset({kind!r}): root is required for real datasets (got None)")
        if kind == "sketchy":
            idx = read_sketchy(root, split=zs, **kw)
        elif kind == "sake":
            idx = read_sake(root, split_dir=zs, **kw)
        else:
            if zs is not None:
                raise ValueError(f"open_dataset({kind!r}, split={split!r}): expected None, 'train' or 'test'")
            reader = {"qmul_v1": read_qmul_v1, "qmul_v2": read_qmul_v2,
                      "qmul_v2_pickle": read_qmul_v2_pickle, "manifest": read_manifest}[kind]
            idx = reader(root, **kw)
    return idx.subset(subset) if subset else idx
