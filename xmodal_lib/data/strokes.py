"""Stroke arrays -> raster sketches (QMUL-V2 ``Coordinate`` pickles, drawn canvases).

A stroke array is float ``(n_points, 3)``: ``x, y`` in pixels of a ``frame``-sized canvas and a
pen-state column that is 1 on the last point of each stroke.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from xmodal_lib.data.index import DataError, Record


def validate_strokes(arr: object, source: str) -> np.ndarray:
    """Check ``arr`` is a finite numeric ``(n, 3)`` array with n >= 2; return it as float64."""
    if not isinstance(arr, np.ndarray):
        raise DataError(f"{source}: expected a numpy array of shape (n, 3), got {type(arr).__name__}")
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] < 2:
        raise DataError(f"{source}: expected a stroke array of shape (n>=2, 3) (x, y, pen-end), got {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise DataError(f"{source}: expected a numeric stroke array, got dtype {arr.dtype}")
    out = arr.astype(np.float64)
    if not np.isfinite(out).all():
        raise DataError(f"{source}: stroke array contains NaN or inf")
    return out


def split_strokes(arr: np.ndarray) -> list[np.ndarray]:
    """Cut a ``(n, 3)`` array into a list of ``(k, 2)`` polylines at pen-end marks."""
    ends = np.flatnonzero(arr[:, 2] > 0.5)
    strokes, start = [], 0
    for e in ends:
        strokes.append(arr[start:e + 1, :2])
        start = e + 1
    if start < len(arr):
        strokes.append(arr[start:, :2])
    return [s for s in strokes if len(s) > 0]


def render_strokes(arr: np.ndarray, size: int = 256, frame: float = 256.0, width: float = 3.0,
                   source: str = "<strokes>") -> Image.Image:
    """Draw the strokes black on white into an ``L`` image of ``size`` x ``size``.

    Coordinates are scaled from a ``frame`` x ``frame`` canvas; ``width`` is in output pixels.
    """
    arr = validate_strokes(arr, source)
    scale = size / float(frame)
    img = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(img)
    w = max(1, int(round(width)))
    for s in split_strokes(arr):
        pts = [(float(x) * scale, float(y) * scale) for x, y in s]
        if len(pts) == 1:
            x, y = pts[0]
            r = w / 2
            draw.ellipse([x - r, y - r, x + r, y + r], fill=0)
        else:
            draw.line(pts, fill=0, width=w, joint="curve")
    return img


# --------------------------------------------------------------------------- drawn canvases
Stroke = Sequence[tuple[float, float]]


def strokes_to_array(strokes: Sequence[Stroke]) -> np.ndarray:
    """Polylines ``[[(x, y), ...], ...]`` -> stroke array ``(n, 3)`` (x, y, pen-end) of :func:`render_strokes`."""
    rows = []
    for s in strokes:
        pts = np.asarray(s, dtype=np.float64).reshape(-1, 2)
        if len(pts) == 0:
            continue
        end = np.zeros((len(pts), 1))
        end[-1] = 1.0
        rows.append(np.hstack([pts, end]))
    if not rows or sum(len(r) for r in rows) < 2:
        raise DataError("drawing: blank canvas (draw at least one stroke)")
    return np.vstack(rows)


def strokes_to_image(strokes: Sequence[Stroke], size: int = 256, canvas_size: float = 256.0,
                     width: float = 3.0):
    """Rasterise canvas strokes (pixels of a ``canvas_size`` square) into an ``L`` PIL image,
    using the stroke renderer of QMUL-V2 files (:func:`render_strokes`)."""
    return render_strokes(strokes_to_array(strokes), size=size, frame=canvas_size, width=width,
                          source="<drawing>")


def sketch_image_to_tensor(image, loader) -> torch.Tensor:
    """A sketch PIL image through exactly the file-sketch path of ``loader`` (an ``ImageLoader``).

    The image is written losslessly to a temporary PNG and loaded as a sketch record, so a drawn
    sketch gets the same crop / resize / normalisation as a sketch file.
    """
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "drawing.png"
        image.save(path)
        return loader.load(Record(path, "sketch", "", "", "test"))


def strokes_to_tensor(strokes: Sequence[Stroke], loader, canvas_size: float = 256.0, width: float = 3.0,
                      render_size: int = 256) -> torch.Tensor:
    """Canvas strokes -> preprocessed sketch tensor ``(3, size, size)`` (same as a sketch file)."""
    return sketch_image_to_tensor(strokes_to_image(strokes, render_size, canvas_size, width), loader)
