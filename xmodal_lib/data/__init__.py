"""Datasets: the embedded synthetic benchmark, real dataset readers and preprocessing.

Every reader returns an :class:`~xmodal_lib.data.index.SBIRIndex`; models never read files.

Main entry points::

    from xmodal_lib.data import open_dataset, SyntheticConfig, ImageLoader, preload
    idx = open_dataset("synthetic", config=SyntheticConfig.smoke())      # zero-shot, 24 classes
    fg = open_dataset("synthetic_fg", category="shoe", split="test")     # instance-level
    sk = open_dataset("sketchy", "../shared/data/sketchy_mini", split="zeroshot1")
    x = preload(idx.sketches, ImageLoader(96, normalize="imagenet", sketch_crop=True))

``ImageLoader``, ``preload`` and ``ImageDataset`` (which import torch) load lazily.
"""
from __future__ import annotations

from typing import Any

from xmodal_lib.data.index import DataError, DataWarning, Record, SBIRIndex
from xmodal_lib.data.manifest import read_manifest
from xmodal_lib.data.qmul import read_qmul_v1, read_qmul_v2, read_qmul_v2_pickle
from xmodal_lib.data.registry import KINDS, open_dataset
from xmodal_lib.data.safe_pickle import safe_load
from xmodal_lib.data.sake import read_sake
from xmodal_lib.data.sketchy import read_sketchy
from xmodal_lib.data.splits import packaged_split
from xmodal_lib.data.strokes import render_strokes
from xmodal_lib.data.synthetic import CLASSES, UNSEEN, SyntheticConfig, generate

_LAZY = {"ImageLoader": "transforms", "preprocess_sketch_image": "transforms", "open_image": "transforms",
         "preload": "datasets", "ImageDataset": "datasets"}

__all__ = ["Record", "SBIRIndex", "DataError", "DataWarning", "open_dataset", "KINDS", "SyntheticConfig", "generate",
           "CLASSES", "UNSEEN", "read_sketchy", "read_sake", "read_qmul_v1", "read_qmul_v2",
           "read_qmul_v2_pickle", "read_manifest", "packaged_split", "safe_load", "render_strokes", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib  # lazy: only needed on this branch
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
