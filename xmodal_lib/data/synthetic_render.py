"""Rendering of synthetic instances: coloured, shaded, cluttered photos and jittery sketches.

Both renderers take the parts of one instance (:mod:`.synthetic_shapes`) and a pose, draw at
twice the output size and downsample (anti-aliasing). The photo gets a gradient background,
random clutter, per-part colours with directional shading and optional stripe/dot texture,
outlines and pixel noise; a sketch gets its own small affine + smooth elastic deformation,
jittered polylines, randomly dropped non-essential strokes and a per-sketch stroke width,
dark ink on white.
"""
from __future__ import annotations

import colorsys
import functools
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from xmodal_lib.data.synthetic_shapes import Part

G = np.random.Generator


def sample_pose(r: G, strength: float = 1.0) -> np.ndarray:
    """Random similarity transform (2 x 3) in unit coordinates: rotation, scale, shift, flip.

    ``strength`` scales the variation: 1 = category-level photos (±25°, scale 0.62-0.88, shift
    ±0.12, random mirror); small values give the canonical, centred views of product photos
    (QMUL-style fine-grained data, where pose must not identify the instance).
    """
    a = np.deg2rad(r.uniform(-25, 25) * strength)
    s = 0.75 + r.uniform(-0.13, 0.13) * strength
    tx, ty = r.uniform(-0.12, 0.12, 2) * strength
    flip = -1.0 if (strength >= 0.5 and r.random() < 0.5) else 1.0
    return np.array([[s * np.cos(a) * flip, -s * np.sin(a), tx], [s * np.sin(a) * flip, s * np.cos(a), ty]])


def apply(m: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Apply a 2 x 3 affine to points ``(k, 2)``."""
    return p @ m[:, :2].T + m[:, 2]


def _to_px(p: np.ndarray, side: int) -> list[tuple[float, float]]:
    q = (p + 1.0) * 0.5 * side
    return [(float(x), float(y)) for x, y in q]


def _palette(r: G) -> list[tuple[int, int, int]]:
    h = r.random()
    cols = []
    for dh, s, v in ((0.0, r.uniform(0.5, 0.9), r.uniform(0.6, 0.95)),
                     (r.uniform(0.2, 0.5), r.uniform(0.4, 0.9), r.uniform(0.5, 0.95)),
                     (r.uniform(-0.1, 0.1), r.uniform(0.2, 0.6), r.uniform(0.15, 0.35))):
        rgb = colorsys.hsv_to_rgb((h + dh) % 1.0, s, v)
        cols.append(tuple(int(255 * c) for c in rgb))
    return cols


@functools.lru_cache(maxsize=4)
def _grid(side: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / max(side - 1, 1)
    return x - 0.5, y - 0.5


def _ramp(side: int, angle: float) -> np.ndarray:
    """``(H, W)`` float32 ramp in [0, 1] along direction ``angle``."""
    x, y = _grid(side)
    return (np.float32(np.cos(angle)) * x + np.float32(np.sin(angle)) * y) / np.float32(1.42) + np.float32(0.5)


def _gradient(side: int, c0: np.ndarray, c1: np.ndarray, angle: float) -> np.ndarray:
    t = _ramp(side, angle)[..., None]  # (H, W, 1)
    return c0.astype(np.float32) * (1 - t) + c1.astype(np.float32) * t  # (H, W, 3)


def render_photo(parts: list[Part], pose: np.ndarray, size: int, r: G, plain: bool = False) -> Image.Image:
    """RGB photo of an instance: gradient background, clutter, shaded coloured parts, noise.

    ``plain=True`` gives a product shot instead (QMUL Shoe/Chair style): a uniform near-white
    background and no clutter; the object is drawn the same way.
    """
    side = 2 * size
    c0, c1 = r.uniform(90, 240, 3), r.uniform(90, 240, 3)
    if plain:  # extra draws only on this path: scene photos stay bit-identical
        c0 = c1 = np.full(3, r.uniform(235, 255))
    bg = _gradient(side, c0, c1, r.uniform(0, 2 * np.pi))
    img = Image.fromarray(bg.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(0 if plain else int(r.integers(3, 8))):  # background clutter
        col = tuple(int(v) for v in r.uniform(60, 230, 3))
        x, y = r.uniform(0, side, 2)
        w, h = r.uniform(0.05, 0.3, 2) * side
        kind = r.integers(3)
        if kind == 0:
            draw.ellipse([x, y, x + w, y + h], fill=col)
        elif kind == 1:
            draw.rectangle([x, y, x + w, y + h], fill=col)
        else:
            draw.line([(x, y), (x + w * r.choice([-1, 1]), y + h)], fill=col, width=int(r.integers(2, 8)))
    pal = _palette(r)
    light = r.uniform(0, 2 * np.pi)
    shade = 1.25 - 0.6 * _ramp(side, light)[..., None]  # (H, W, 1) brightness
    if r.random() < 0.5:  # surface texture on the main colour: stripes or dots
        u = _ramp(side, r.uniform(0, 2 * np.pi)) * np.float32(r.uniform(8, 20) * np.pi)
        v = _ramp(side, r.uniform(0, 2 * np.pi)) * np.float32(r.uniform(8, 20) * np.pi)
        tex = np.sin(u) if r.random() < 0.5 else np.sin(u) * np.sin(v)
        texture = 1 + np.float32(r.uniform(0.08, 0.2)) * tex[..., None]  # (H, W, 1)
    else:
        texture = np.float32(1.0)
    layers: dict[int, Image.Image] = {}
    for part in parts:
        q = _to_px(apply(pose, part.pts), side)
        col = np.asarray(pal[part.color], float)
        if part.closed and len(q) >= 3:
            mask = Image.new("L", (side, side), 0)
            ImageDraw.Draw(mask).polygon(q, fill=255)
            if part.color not in layers:
                lit = shade * (texture if part.color == 0 else 1) * col.astype(np.float32)  # (H, W, 3)
                layers[part.color] = Image.fromarray(lit.clip(0, 255).astype(np.uint8))
            img.paste(layers[part.color], (0, 0), mask)
            draw.polygon(q, outline=tuple(int(v * 0.5) for v in col), width=max(1, side // 96))
        else:
            w = max(2, int(part.width * np.linalg.norm(pose[:, 0]) * side / 2))
            draw.line(q, fill=tuple(int(v) for v in col), width=w, joint="curve")
    arr = np.asarray(img.resize((size, size), Image.LANCZOS), dtype=np.float64)
    arr = arr * r.uniform(0.85, 1.15) + r.normal(0, r.uniform(3, 10), arr.shape)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def _deformation(r: G, strength: float) -> np.ndarray:
    """Small random affine around identity (2 x 3)."""
    a = np.deg2rad(r.uniform(-6, 6) * strength)
    s = 1 + r.uniform(-0.07, 0.07) * strength
    sh = r.uniform(-0.1, 0.1) * strength
    m = np.array([[s * np.cos(a), -s * np.sin(a) + sh], [s * np.sin(a), s * np.cos(a)]])
    return np.concatenate([m, r.uniform(-0.05, 0.05, (2, 1)) * strength], 1)


def _elastic(r: G, strength: float) -> Callable[[np.ndarray], np.ndarray]:
    """Smooth displacement field as a function of points (sum of low-frequency sinusoids)."""
    k = r.uniform(1.0, 3.0, (3, 2, 2))
    ph = r.uniform(0, 2 * np.pi, (3, 2))
    amp = 0.025 * strength / 3

    def f(p: np.ndarray) -> np.ndarray:
        d = np.zeros_like(p)
        for i in range(3):
            for j in range(2):
                d[:, j] += amp * np.sin(p @ k[i, j] * np.pi + ph[i, j])
        return p + d
    return f


def _resample(p: np.ndarray, closed: bool, step: float) -> np.ndarray:
    if closed:
        p = np.concatenate([p, p[:1]])
    seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
    s = np.concatenate([[0], np.cumsum(seg)])
    if s[-1] < 1e-6:
        return p
    t = np.linspace(0, s[-1], max(int(s[-1] / step) + 2, 2))
    return np.stack([np.interp(t, s, p[:, 0]), np.interp(t, s, p[:, 1])], 1)


def render_sketch(parts: list[Part], pose: np.ndarray, size: int, r: G, drop: float = 0.15,
                  jitter: float = 1.0, deform: float = 1.0) -> Image.Image:
    """``L`` sketch of an instance: dark jittered strokes on white, some strokes missing."""
    side = 2 * size
    img = Image.new("L", (side, side), 255)
    draw = ImageDraw.Draw(img)
    m = _deformation(r, deform)
    warp = _elastic(r, deform)
    base_w = r.uniform(0.8, 2.2) * side / 96
    ink = int(r.integers(0, 70))
    kept = [p for p in parts if p.essential or r.random() >= drop]
    for part in kept:
        p = _resample(part.pts, part.closed, 0.04)
        n = len(p)
        walk = np.cumsum(r.normal(0, 0.006 * jitter, (n, 2)), axis=0)  # drifting hand
        walk -= np.linspace(0, 1, n)[:, None] * walk[-1:] * r.uniform(0.3, 1.0)
        p = p + walk + r.normal(0, 0.003 * jitter, (n, 2))
        if part.closed and n > 6:  # start anywhere, leave a gap or overshoot
            k = int(r.integers(n))
            p = np.roll(p[:-1], -k, axis=0)
            cut = int(r.integers(-2, 3))
            p = p[: len(p) + cut] if cut < 0 else np.concatenate([p, p[1:1 + cut]])
        q = apply(pose, warp(apply(m, p)))
        w = max(1, int(round(base_w * r.uniform(0.7, 1.3))))
        draw.line(_to_px(q, side), fill=ink, width=w, joint="curve")
    return img.resize((size, size), Image.LANCZOS)
