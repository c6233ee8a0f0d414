"""ZSE-SBIR's released input pipeline as an option (methods_spec.md §3.2), our code.

* Sketch (:func:`official_sketch_crop`): ink = pixels with R + G + B <= 300; crop the ink box
  widened by 10 px on every side (clipped to the image); resize keeping the aspect ratio so the
  longer side is ``size``; pad the shorter side symmetrically with white to ``size`` x ``size``.
* Photo: resized to exactly ``size`` x ``size`` (aspect not kept), bicubic.
* Both: ``[0, 1]`` then ``(x - 0.5) / 0.5``.

Differences from the released code, all deliberate: images are decoded with PIL, not OpenCV,
and resized with PIL's bilinear filter (antialiased when shrinking; OpenCV's ``INTER_LINEAR`` is
not), so pixels differ slightly; an odd padding puts the extra white row/column after the image;
transparency is composited on white first (QMUL PNGs); a sketch without ink is refused with a
:class:`DataError` (the released code would crash on an empty box).

The project's default crop (:func:`xmodal_lib.data.transforms.crop_to_ink`: grey < 200, 5 %
margin, square pad then resize) stays the default; the paper profile of notebook 04 uses this one.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from xmodal_lib.data.index import DataError, Record
from xmodal_lib.data.transforms import MAX_PIXELS, load_pil, to_white_background

__all__ = ["official_sketch_crop", "OfficialZSELoader", "INK_SUM", "INK_MARGIN_PX"]

#: a pixel is ink when R + G + B <= INK_SUM (the released code's test)
INK_SUM = 300
#: pixels added to every side of the ink box before clipping
INK_MARGIN_PX = 10


def official_sketch_crop(im: Image.Image, size: int, source: str = "<sketch>") -> Image.Image:
    """RGB ``size`` x ``size`` sketch cropped and padded as ZSE-SBIR's released loader does."""
    rgb = to_white_background(im, source)
    arr = np.asarray(rgb, dtype=np.int32)  # (H, W, 3)
    ink = arr.sum(-1) <= INK_SUM
    if not ink.any():
        raise DataError(f"{source}: blank sketch (no pixel with R+G+B <= {INK_SUM})")
    ys, xs = np.nonzero(ink)
    h, w = ink.shape
    top, bottom = max(0, int(ys.min()) - INK_MARGIN_PX), min(h, int(ys.max()) + 1 + INK_MARGIN_PX)
    left, right = max(0, int(xs.min()) - INK_MARGIN_PX), min(w, int(xs.max()) + 1 + INK_MARGIN_PX)
    crop = rgb.crop((left, top, right, bottom))
    cw, ch = crop.size
    scale = size / max(cw, ch)
    nw, nh = max(1, min(size, round(cw * scale))), max(1, min(size, round(ch * scale)))
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(crop.resize((nw, nh), Image.BILINEAR), ((size - nw) // 2, (size - nh) // 2))
    return canvas


class OfficialZSELoader:
    """``Record -> FloatTensor[3, size, size]`` in ``[-1, 1]`` with the released ZSE-SBIR geometry
    (a drop-in for :class:`~xmodal_lib.data.transforms.ImageLoader` in ``preload``)."""

    normalize = "half"

    def __init__(self, size: int, max_pixels: int = MAX_PIXELS) -> None:
        if size < 8:
            raise ValueError(f"OfficialZSELoader(size=...): expected >= 8, got {size}")
        self.size, self.max_pixels = int(size), max_pixels

    def __repr__(self) -> str:
        return f"OfficialZSELoader(size={self.size})"

    def pil(self, record: Record) -> Image.Image:
        im = load_pil(record, self.max_pixels)
        if record.modality == "sketch":
            return official_sketch_crop(im, self.size, str(record.path))
        return to_white_background(im, str(record.path)).resize((self.size, self.size), Image.BICUBIC)

    def load(self, record: Record, seed: int | None = None) -> torch.Tensor:
        """``FloatTensor[3, size, size]``; ``seed`` is accepted for interface parity (no augmentation)."""
        arr = np.asarray(self.pil(record), dtype=np.float32) / 255.0  # (H, W, 3)
        return (torch.from_numpy(arr).permute(2, 0, 1).contiguous() - 0.5) / 0.5  # (3, H, W)

    __call__ = load
