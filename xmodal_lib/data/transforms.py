"""Image decoding and preprocessing: records -> ``FloatTensor[3, size, size]``.

* any PIL mode is accepted; transparency (RGBA, LA, P with alpha) is composited on **white**
  (QMUL sketches are RGBA with a transparent background);
* sketches can be cropped to their ink bounding box and padded to a square with white,
  keeping the aspect ratio; a non-square photo or sketch is resized keeping its aspect and
  padded with white (``fit="pad"``, the default, so both sides of a pair get the same
  geometry) or stretched (``fit="stretch"``);
* 16-bit grey images are scaled by 65535 (a dark image stays dark);
* stroke-pickle records (``<pickle>#<key>``) are rendered with :mod:`.strokes`;
* decoding problems (missing, corrupt, truncated, oversized, blank sketch) raise
  :class:`DataError` with the path.
"""
from __future__ import annotations

import functools
import random
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from xmodal_lib.data.index import DataError, Record
from xmodal_lib.data.safe_pickle import safe_load
from xmodal_lib.data.strokes import render_strokes

#: Largest image (in pixels) we decode; larger files are refused as decompression bombs.
MAX_PIXELS: int = 40_000_000
#: Gray level below which a sketch pixel counts as ink.
INK_THRESHOLD: int = 200
_NORMS = {
    "none": None,
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}
#: the input normalisations of :class:`ImageLoader` as (mean, std); the one table the library uses
NORMS = _NORMS


def open_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open and fully decode an image; every failure becomes a DataError naming the file.

    An EXIF orientation tag is applied (a phone photo stored sideways is returned upright; the
    official SBIR code does not do this, and Sketchy/QMUL files carry no such tag).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: image file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(p)
            w, h = im.size
            if w * h > max_pixels:
                raise DataError(f"{p}: image is {w}x{h} = {w * h} pixels, more than the limit "
                                f"{max_pixels} (possible decompression bomb)")
            im.load()
            if im.getexif().get(0x0112, 1) != 1:  # EXIF orientation (phone photos): stored sideways
                im = ImageOps.exif_transpose(im)
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{p}: image too large, refused as a possible decompression bomb ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:  # UnidentifiedImageError is an OSError
        raise DataError(f"{p}: cannot decode image (corrupt or truncated file?): {e}") from None
    return im


def to_white_background(im: Image.Image, source: str = "<image>") -> Image.Image:
    """RGB copy of ``im`` with any transparency composited on white (16-bit grey scaled by 65535)."""
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode in ("RGB", "L") and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grey (PNG opens as I;16 or I): full scale is 65535, not the image's own maximum,
        # so a dark image stays dark
        arr = np.asarray(im, dtype=np.float64)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise DataError(f"{source}: {im.mode} image with values in [{arr.min():.0f}, {arr.max():.0f}]; "
                            "expected 8-bit or 16-bit (0..65535) grey levels")
        arr = np.round(255.0 * arr / 65535.0)
        return Image.fromarray(arr.astype(np.uint8)).convert("RGB")
    return im.convert("RGB")


def ink_bbox(gray: Image.Image, threshold: int = INK_THRESHOLD) -> tuple[int, int, int, int] | None:
    """Bounding box ``(left, top, right, bottom)`` of pixels darker than ``threshold``, or None."""
    mask = np.asarray(gray) < threshold
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def crop_to_ink(gray: Image.Image, margin: float = 0.05, threshold: int = INK_THRESHOLD,
                source: str = "<sketch>") -> Image.Image:
    """Crop an ``L`` sketch to its ink box plus ``margin`` and pad it to a white square."""
    box = ink_bbox(gray, threshold)
    if box is None:
        raise DataError(f"{source}: blank sketch (no pixel darker than {threshold})")
    l, t, r, b = box
    side = max(r - l, b - t)
    pad = int(round(side * margin))
    side += 2 * pad
    canvas = Image.new("L", (side, side), 255)
    canvas.paste(gray.crop(box), ((side - (r - l)) // 2, (side - (b - t)) // 2))
    return canvas


def preprocess_sketch_image(im: Image.Image, crop: bool = True, margin: float = 0.05,
                            source: str = "<sketch>") -> Image.Image:
    """Any-mode sketch (file or drawn canvas) -> ``L`` image, dark ink on white.

    Transparency is composited on white; a sketch with no ink raises DataError; with ``crop``
    the result is the ink bounding box padded to a square.
    """
    gray = to_white_background(im, source).convert("L")
    if ink_bbox(gray) is None:
        raise DataError(f"{source}: blank sketch (no pixel darker than {INK_THRESHOLD})")
    return crop_to_ink(gray, margin, source=source) if crop else gray


#: How a non-square image becomes ``size`` x ``size``: ``"pad"`` keeps the aspect ratio and pads
#: with white (photos and sketches alike), ``"stretch"`` resizes each side independently.
FITS: tuple[str, ...] = ("pad", "stretch")


def fit_square(im: Image.Image, size: int, resample: int, fit: str = "pad",
               fill: int | tuple[int, ...] = 255) -> Image.Image:
    """``im`` resized to ``size`` x ``size`` by ``fit`` (see :data:`FITS`); a square image is
    simply resized either way."""
    w, h = im.size
    if fit == "stretch" or w == h:
        return im.resize((size, size), resample)
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = Image.new(im.mode, (size, size), fill)
    canvas.paste(im.resize((nw, nh), resample), ((size - nw) // 2, (size - nh) // 2))
    return canvas


@functools.lru_cache(maxsize=8)
def _stroke_pickle(path: str) -> dict:
    data = safe_load(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a dict of stroke arrays, got {type(data).__name__}")
    return data


def split_pickle_path(path: str | Path) -> tuple[Path, str] | None:
    """``<pickle>#<key>`` -> ``(pickle path, key)``; None for ordinary files."""
    s = str(path)
    if "#" not in s:
        return None
    file, key = s.split("#", 1)
    return Path(file), key


def load_stroke_record(path: str | Path, size: int = 256) -> Image.Image:
    """Render the sketch ``<pickle>#<key>`` (QMUL-V2 coordinates, 256 x 256 frame)."""
    parts = split_pickle_path(path)
    if parts is None:
        raise DataError(f"{path}: expected '<pickle path>#<key>'")
    file, key = parts
    data = _stroke_pickle(str(file))
    if key not in data:
        raise DataError(f"{file}: key {key!r} not in stroke pickle")
    return render_strokes(data[key], size=size, frame=256.0, source=f"{file}#{key}")


def load_pil(record: Record, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Raw decoded image of a record (stroke records rendered at 256 px)."""
    if split_pickle_path(record.path) is not None:
        return load_stroke_record(record.path)
    return open_image(record.path, max_pixels)


class ImageLoader:
    """Turns a :class:`Record` into a normalised ``FloatTensor[3, size, size]``.

    Args:
        size: output side in pixels.
        normalize: ``"none"`` (values in [0, 1]), ``"imagenet"`` (mean/std) or ``"half"`` ([-1, 1]).
        sketch_crop: crop sketches to their ink box, padded to a white square.
        augment: random horizontal flip and small scale/shift jitter (off in paper profiles);
            pass ``seed`` to :meth:`load` to make it a deterministic function of the seed.
        max_pixels: decompression-bomb limit.
        fit: how a non-square image becomes square, the same for photos and sketches:
            ``"pad"`` (default: aspect kept, white padding) or ``"stretch"`` (each side resized;
            the behaviour for photos before issue #19). With ``sketch_crop`` the ink box is
            already padded to a square, so ``"pad"`` gives photos the same aspect-kept geometry.
    """

    def __init__(self, size: int, normalize: str = "none", sketch_crop: bool = False,
                 augment: bool = False, max_pixels: int = MAX_PIXELS, fit: str = "pad") -> None:
        if size < 8:
            raise ValueError(f"ImageLoader(size=...): expected >= 8, got {size}")
        if fit not in FITS:
            raise ValueError(f"ImageLoader(fit=...): expected one of {list(FITS)}, got {fit!r}")
        self.fit = fit
        if normalize not in _NORMS:
            raise ValueError(f"ImageLoader(normalize=...): expected one of {list(_NORMS)}, got {normalize!r}")
        self.size, self.normalize, self.sketch_crop = size, normalize, sketch_crop
        self.augment, self.max_pixels = augment, max_pixels

    def __repr__(self) -> str:
        return (f"ImageLoader(size={self.size}, normalize={self.normalize!r}, "
                f"sketch_crop={self.sketch_crop}, augment={self.augment}, fit={self.fit!r})")

    def pil(self, record: Record, seed: int | None = None) -> Image.Image:
        """Preprocessed RGB PIL image of ``record`` at ``size`` x ``size``."""
        im = load_pil(record, self.max_pixels)
        src = str(record.path)
        if record.modality == "sketch":
            gray = preprocess_sketch_image(im, crop=self.sketch_crop, source=src)
            out = fit_square(gray, self.size, Image.BILINEAR, self.fit, 255).convert("RGB")
            fill = (255, 255, 255)
        else:
            out = fit_square(to_white_background(im, src), self.size, Image.BICUBIC, self.fit, (255, 255, 255))
            fill = (255, 255, 255)
        if self.augment:
            out = self._augment(out, fill, random.Random(seed))
        return out

    def _augment(self, im: Image.Image, fill: tuple[int, int, int], rng: random.Random) -> Image.Image:
        if rng.random() < 0.5:
            im = ImageOps.mirror(im)
        s = rng.uniform(0.9, 1.1)
        dx, dy = rng.uniform(-0.05, 0.05) * self.size, rng.uniform(-0.05, 0.05) * self.size
        c = self.size / 2
        # inverse affine: output (x, y) samples input ((x - c - dx) / s + c, ...)
        coeffs = (1 / s, 0, c - (c + dx) / s, 0, 1 / s, c - (c + dy) / s)
        return im.transform(im.size, Image.AFFINE, coeffs, resample=Image.BILINEAR, fillcolor=fill)

    def load(self, record: Record, seed: int | None = None) -> torch.Tensor:
        """``FloatTensor[3, size, size]`` of ``record``."""
        arr = np.asarray(self.pil(record, seed), dtype=np.float32) / 255.0  # (H, W, 3)
        x = torch.from_numpy(arr).permute(2, 0, 1).contiguous()  # (3, H, W)
        norm = _NORMS[self.normalize]
        if norm is not None:
            mean = torch.tensor(norm[0]).view(3, 1, 1)
            std = torch.tensor(norm[1]).view(3, 1, 1)
            x = (x - mean) / std
        return x

    __call__ = load
