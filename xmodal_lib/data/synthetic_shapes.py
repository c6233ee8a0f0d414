"""Parametric shape families of the synthetic benchmark: one builder per class.

A builder takes a seeded ``numpy.random.Generator`` and returns the parts of one *instance*
(its proportions, part presence and counts are drawn from the generator), so calling it twice
with equally seeded generators gives the same object: the photo and every sketch of an
instance are drawn from the same parts. Coordinates are in a unit frame ``[-1, 1]^2``
(y pointing down), before pose.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

G = np.random.Generator


@dataclass
class Part:
    """One drawable piece: a polyline/polygon ``pts (k, 2)``.

    ``closed`` parts are polygons (filled in photos), open ones are strokes; ``color`` picks one
    of the instance's colours (0 main, 1 accent, 2 dark); ``width`` is the photo line width
    in unit coordinates for open parts; ``essential`` parts are never dropped from sketches.
    """

    pts: np.ndarray
    closed: bool = True
    color: int = 0
    width: float = 0.03
    essential: bool = False


def ell(cx: float, cy: float, rx: float, ry: float, a0: float = 0.0, a1: float = 2 * np.pi,
        n: int = 28) -> np.ndarray:
    """Points of an ellipse (arc from ``a0`` to ``a1``)."""
    closed = abs(a1 - a0 - 2 * np.pi) < 1e-9
    t = np.linspace(a0, a1, n, endpoint=not closed)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Axis-aligned rectangle corners."""
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)


def pts(*xy: float) -> np.ndarray:
    """``pts(x0, y0, x1, y1, ...)`` -> ``(k, 2)`` array."""
    return np.asarray(xy, float).reshape(-1, 2)


def P(a: np.ndarray, **kw) -> Part:
    return Part(np.asarray(a, float), **kw)


def L(a: np.ndarray, **kw) -> Part:
    kw.setdefault("color", 2)
    return Part(np.asarray(a, float), closed=False, **kw)


def cup(r: G) -> list[Part]:
    w, h, taper = r.uniform(0.45, 0.7), r.uniform(0.6, 1.0), r.uniform(0.0, 0.15)
    top = -h / 2
    parts = [P(pts(-w, top, w, top, w - taper, h / 2, -w + taper, h / 2), essential=True)]
    hr = r.uniform(0.18, 0.32)
    parts.append(L(ell(w - 0.02, 0.0, hr, hr * r.uniform(0.9, 1.3), -np.pi / 2, np.pi / 2), color=0, width=0.06))
    if r.random() < 0.5:
        parts.append(P(ell(0, h / 2 + 0.05, w + 0.25, 0.07), color=1))
    for i in range(r.integers(0, 3)):
        y = top + (i + 1) * h / 4
        parts.append(L(pts(-w + 0.05, y, w - 0.05, y), color=1))
    return parts


def house(r: G) -> list[Part]:
    w, h, roof = r.uniform(0.5, 0.8), r.uniform(0.4, 0.7), r.uniform(0.3, 0.6)
    y0 = 0.8 - 2 * h
    parts = [P(rect(-w, y0, w, 0.8), essential=True),
             P(pts(-w - 0.1, y0, 0, y0 - roof, w + 0.1, y0), color=1, essential=True)]
    if r.random() < 0.6:
        cx = r.uniform(0.2, 0.5) * w
        parts.insert(0, P(rect(cx, y0 - roof * 0.9, cx + 0.12, y0 - roof * 0.2), color=2))
    dx = r.uniform(-0.5, 0.5) * w
    parts.append(P(rect(dx - 0.12, 0.8 - r.uniform(0.3, 0.5), dx + 0.12, 0.8), color=2))
    nwin = int(r.integers(1, 4))
    for i in range(nwin):
        x = -w + (i + 0.5) * 2 * w / nwin
        if abs(x - dx) > 0.2:
            parts.append(P(rect(x - 0.09, y0 + 0.15, x + 0.09, y0 + 0.33), color=1))
    return parts


def tree(r: G) -> list[Part]:
    tw, th = r.uniform(0.08, 0.16), r.uniform(0.3, 0.6)
    parts = [P(rect(-tw, 0.9 - th, tw, 0.9), color=2, essential=True)]
    if r.random() < 0.5:  # pine: stacked triangles
        for i in range(int(r.integers(2, 5))):
            y = 0.9 - th - i * 0.3
            wd = 0.7 - i * 0.12
            parts.append(P(pts(-wd, y, 0, y - 0.5, wd, y), color=0, essential=i == 0))
    else:  # broadleaf: overlapping blobs
        n = int(r.integers(1, 5))
        for i in range(n):
            a = 2 * np.pi * i / n + r.uniform(-0.3, 0.3)
            rr = r.uniform(0.3, 0.45)
            parts.append(P(ell(0.25 * np.cos(a) * (n > 1), 0.9 - th - 0.4 + 0.2 * np.sin(a) * (n > 1), rr, rr * 0.85),
                           essential=i == 0))
    return parts


def fish(r: G) -> list[Part]:
    bl, bh = r.uniform(0.5, 0.75), r.uniform(0.22, 0.45)
    tl = r.uniform(0.2, 0.4)
    parts = [P(pts(bl - 0.05, 0, bl + tl, -tl * 0.8, bl + tl * 0.8, 0, bl + tl, tl * 0.8), color=1, essential=True),
             P(ell(0, 0, bl, bh), essential=True)]
    if r.random() < 0.7:
        parts.append(P(pts(-0.1, -bh + 0.02, 0.15, -bh - r.uniform(0.1, 0.25), 0.3, -bh + 0.05), color=1))
    parts.append(P(ell(-bl * 0.6, -bh * 0.2, 0.05, 0.05, n=10), color=2))
    for i in range(int(r.integers(0, 4))):
        x = -0.2 + 0.2 * i
        parts.append(L(ell(x, 0, 0.12, bh * 0.8, -np.pi / 3, np.pi / 3, n=8), color=2))
    return parts


def star(r: G) -> list[Part]:
    n, inner = int(r.integers(4, 9)), r.uniform(0.3, 0.6)
    t = np.arange(2 * n) * np.pi / n - np.pi / 2
    rad = np.where(np.arange(2 * n) % 2 == 0, 0.9, 0.9 * inner)
    parts = [P(np.stack([rad * np.cos(t), rad * np.sin(t)], 1), essential=True)]
    if r.random() < 0.5:
        parts.append(P(ell(0, 0, 0.25 * inner, 0.25 * inner, n=12), color=1))
    return parts


def car(r: G) -> list[Part]:
    w, h = r.uniform(0.7, 0.9), r.uniform(0.2, 0.32)
    cab_w, cab_h, cab_x = r.uniform(0.3, 0.55), r.uniform(0.18, 0.3), r.uniform(-0.2, 0.15)
    y = 0.3
    parts = [P(pts(cab_x - cab_w, y - h, cab_x - cab_w * 0.6, y - h - cab_h, cab_x + cab_w * 0.6, y - h - cab_h,
                   cab_x + cab_w, y - h), color=1),
             P(rect(-w, y - h, w, y), essential=True)]
    wr = r.uniform(0.13, 0.2)
    for x in (-w * 0.6, w * 0.6):
        parts.append(P(ell(x, y, wr, wr, n=16), color=2, essential=True))
    if r.random() < 0.5:
        parts.append(P(rect(cab_x - 0.02, y - h - cab_h * 0.8, cab_x + 0.02, y - h), color=2))
    return parts


def umbrella(r: G) -> list[Part]:
    rad, dome = r.uniform(0.6, 0.85), r.uniform(0.35, 0.6)
    n = int(r.integers(3, 8))
    top = ell(0, 0, rad, dome, np.pi, 2 * np.pi, n=20)
    xs = np.linspace(rad, -rad, 2 * n + 1)
    scal = np.stack([xs, np.where(np.arange(2 * n + 1) % 2 == 1, 0.08, 0.0)], 1)
    parts = [P(np.concatenate([top, scal[1:-1]]), essential=True)]
    hl = r.uniform(0.5, 0.8)
    parts.append(L(pts(0, 0, 0, hl), width=0.04, essential=True))
    if r.random() < 0.7:
        parts.append(L(ell(-0.1, hl, 0.1, 0.1, 0, np.pi, n=8), width=0.04))
    for x in xs[2:-1:2]:
        parts.append(L(pts(0, -dome, x, 0.0), color=1))
    return parts


def key(r: G) -> list[Part]:
    rr, sl = r.uniform(0.2, 0.35), r.uniform(0.6, 1.0)
    x0 = -0.8 + rr
    parts = [P(ell(x0, 0, rr, rr * r.uniform(0.8, 1.2)), essential=True),
             P(rect(x0 + rr, -0.05, x0 + rr + sl, 0.05), essential=True),
             P(ell(x0, 0, rr * 0.4, rr * 0.4, n=12), color=2)]
    for i in range(int(r.integers(1, 5))):
        x = x0 + rr + sl - 0.06 - i * 0.12
        parts.append(P(rect(x - 0.04, 0.05, x + 0.04, 0.05 + r.uniform(0.08, 0.2)), color=0))
    return parts


def bicycle(r: G) -> list[Part]:
    wr, base = r.uniform(0.25, 0.38), r.uniform(0.45, 0.65)
    y = 0.35
    parts = [L(ell(x, y, wr, wr, n=24).tolist() + [[x + wr, y]], color=2, width=0.035, essential=True)
             for x in (-base, base)]
    sx, sy, hx, hy = -0.1, y - r.uniform(0.4, 0.6), base * 0.7, y - r.uniform(0.45, 0.7)
    parts.append(L(pts(-base, y, sx, sy, 0.05, y, hx, sy + 0.05, sx, sy), color=0, width=0.04, essential=True))
    parts.append(L(pts(base, y, hx, hy), color=0, width=0.04))
    parts.append(L(pts(hx - r.uniform(0.05, 0.2), hy, hx + 0.12, hy - 0.05), width=0.04))
    if r.random() < 0.7:
        parts.append(P(ell(sx, sy - 0.04, 0.12, 0.04, n=12), color=2))
    return parts


def sun(r: G) -> list[Part]:
    cr, n, rl = r.uniform(0.3, 0.45), int(r.integers(5, 14)), r.uniform(0.2, 0.4)
    parts = [P(ell(0, 0, cr, cr), essential=True)]
    off = r.uniform(0, np.pi)
    for i in range(n):
        a = off + 2 * np.pi * i / n
        parts.append(L(pts((cr + 0.08) * np.cos(a), (cr + 0.08) * np.sin(a), (cr + 0.08 + rl) * np.cos(a),
                           (cr + 0.08 + rl) * np.sin(a)), color=1, width=0.04))
    return parts


def flower(r: G) -> list[Part]:
    n, pl, cy = int(r.integers(4, 10)), r.uniform(0.18, 0.3), -0.35
    parts = [L(pts(0, cy, r.uniform(-0.1, 0.1), 0.9), width=0.04, essential=True)]
    if r.random() < 0.7:
        parts.append(P(ell(0.15, 0.45, 0.15, 0.06), color=2))
    for i in range(n):
        a = 2 * np.pi * i / n
        c, s = np.cos(a), np.sin(a)
        e = ell(0, 0, pl, pl * 0.4, n=14) + [pl + 0.08, 0]
        rot = e @ np.array([[c, s], [-s, c]])
        parts.append(P(rot + [0, cy], essential=i == 0))
    parts.append(P(ell(0, cy, 0.1, 0.1, n=14), color=1, essential=True))
    return parts


def apple(r: G) -> list[Part]:
    w, h = r.uniform(0.5, 0.7), r.uniform(0.5, 0.7)
    t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    dent = 1 - r.uniform(0.05, 0.2) * np.exp(-((t - 3 * np.pi / 2) ** 2) / 0.1)
    parts = [P(np.stack([w * np.cos(t) * dent, 0.1 + h * np.sin(t) * dent], 1), essential=True)]
    parts.append(L(pts(0, 0.1 - h * 0.8, r.uniform(-0.1, 0.15), 0.1 - h - r.uniform(0.15, 0.3)), width=0.04))
    if r.random() < 0.6:
        parts.append(P(ell(0.18, 0.1 - h - 0.1, 0.15, 0.06), color=1))
    return parts


def candle(r: G) -> list[Part]:
    w, h = r.uniform(0.12, 0.25), r.uniform(0.6, 1.1)
    top = 0.7 - h
    parts = [P(rect(-w, top, w, 0.7), essential=True),
             L(pts(0, top, 0, top - 0.1)),
             P(pts(0, top - 0.45, 0.09, top - 0.2, 0, top - 0.1, -0.09, top - 0.2), color=1, essential=True)]
    if r.random() < 0.6:
        parts.append(P(ell(0, 0.75, w + 0.25, 0.08), color=2))
    for i in range(int(r.integers(0, 3))):
        parts.append(L(pts(-w, top + 0.15 + i * 0.15, -w + 0.05, top + 0.3 + i * 0.15), color=1))
    return parts


def mushroom(r: G) -> list[Part]:
    cw, ch, sw = r.uniform(0.5, 0.85), r.uniform(0.3, 0.6), r.uniform(0.1, 0.22)
    parts = [P(rect(-sw, 0.0, sw, r.uniform(0.5, 0.8)), color=1, essential=True),
             P(ell(0, 0.05, cw, ch, np.pi, 2 * np.pi, n=22), essential=True)]
    for _ in range(int(r.integers(0, 5))):
        x, y = r.uniform(-0.6, 0.6) * cw, r.uniform(-0.7, -0.25) * ch
        parts.append(P(ell(x, y, 0.07, 0.05, n=10), color=1))
    return parts


def sailboat(r: G) -> list[Part]:
    hw, hh, mh = r.uniform(0.6, 0.85), r.uniform(0.15, 0.3), r.uniform(0.9, 1.3)
    y = 0.55
    parts = [P(pts(-hw, y, hw, y, hw * 0.7, y + hh, -hw * 0.7, y + hh), color=2, essential=True),
             L(pts(0, y, 0, y - mh), width=0.035)]
    parts.append(P(pts(0.03, y - mh, 0.03, y - 0.08, r.uniform(0.4, 0.7), y - 0.08), color=0, essential=True))
    if r.random() < 0.6:
        parts.append(P(pts(-0.03, y - mh * 0.85, -0.03, y - 0.08, -r.uniform(0.3, 0.55), y - 0.08), color=1))
    if r.random() < 0.5:
        parts.append(P(pts(0, y - mh, 0.2, y - mh + 0.06, 0, y - mh + 0.12), color=1))
    return parts


def rocket(r: G) -> list[Part]:
    w, h, nose = r.uniform(0.15, 0.25), r.uniform(0.8, 1.1), r.uniform(0.2, 0.4)
    top = 0.6 - h
    parts = [P(rect(-w, top, w, 0.6), essential=True),
             P(pts(-w, top, 0, top - nose, w, top), color=1, essential=True)]
    fl = r.uniform(0.15, 0.3)
    parts.append(P(pts(-w, 0.6 - 0.3, -w - fl, 0.7, -w, 0.6), color=1))
    parts.append(P(pts(w, 0.6 - 0.3, w + fl, 0.7, w, 0.6), color=1))
    for i in range(int(r.integers(1, 4))):
        parts.append(P(ell(0, top + 0.15 + 0.22 * i, w * 0.5, w * 0.5, n=12), color=2))
    if r.random() < 0.5:
        parts.append(P(pts(-w * 0.7, 0.6, 0, 0.6 + r.uniform(0.15, 0.3), w * 0.7, 0.6), color=1))
    return parts


def kite(r: G) -> list[Part]:
    w, up, down = r.uniform(0.3, 0.5), r.uniform(0.25, 0.4), r.uniform(0.5, 0.75)
    c = (0.0, -0.3)
    parts = [P(pts(c[0], c[1] - up, c[0] + w, c[1], c[0], c[1] + down, c[0] - w, c[1]), essential=True),
             L(pts(c[0], c[1] - up, c[0], c[1] + down), color=1), L(pts(c[0] - w, c[1], c[0] + w, c[1]), color=1)]
    n = int(r.integers(2, 6))
    tail = np.stack([0.15 * np.sin(np.linspace(0, 3, n * 2 + 1)), np.linspace(c[1] + down, 0.9, n * 2 + 1)], 1)
    parts.append(L(tail, essential=True))
    for (x, y) in tail[2::2]:
        parts.append(P(pts(x - 0.07, y - 0.04, x + 0.07, y + 0.04, x + 0.07, y - 0.04, x - 0.07, y + 0.04), color=1))
    return parts


def ladder(r: G) -> list[Part]:
    w, h, n = r.uniform(0.2, 0.4), r.uniform(0.7, 0.9), int(r.integers(3, 8))
    parts = [L(pts(-w, -h, -w, h), color=0, width=0.05, essential=True),
             L(pts(w, -h, w, h), color=0, width=0.05, essential=True)]
    for y in np.linspace(-h + 0.15, h - 0.15, n):
        parts.append(L(pts(-w, y, w, y), color=1, width=0.04))
    return parts


def table(r: G) -> list[Part]:
    w, th, lh = r.uniform(0.6, 0.9), r.uniform(0.06, 0.15), r.uniform(0.4, 0.7)
    y = -0.1
    parts = [P(rect(-w, y, w, y + th), essential=True)]
    nl, inset = int(r.integers(2, 5)), r.uniform(0.0, 0.15)
    for x in np.linspace(-w + 0.05 + inset, w - 0.05 - inset, nl):
        parts.append(L(pts(x, y + th, x + (0.05 * np.sign(x) if r.random() < 0.4 else 0), y + th + lh),
                       color=2, width=0.05))
    if r.random() < 0.4:
        parts.append(P(ell(r.uniform(-0.4, 0.4), y - 0.12, 0.12, 0.12, np.pi, 2 * np.pi, n=10), color=1))
    return parts


def chair(r: G) -> list[Part]:
    sw, sy, bh = r.uniform(0.35, 0.55), r.uniform(0.0, 0.25), r.uniform(0.4, 0.8)
    lh = r.uniform(0.4, 0.7)
    round_back = r.random() < 0.4
    back = ell(0, sy - bh * 0.5, sw, bh * 0.5, np.pi, 2 * np.pi, n=14) if round_back else \
        rect(-sw, sy - bh, sw, sy - 0.02)
    if round_back:
        back = np.concatenate([back, pts(sw, sy - 0.02, -sw, sy - 0.02)])
    parts = [P(back, essential=True), P(rect(-sw - 0.05, sy, sw + 0.05, sy + 0.08), color=1, essential=True)]
    for x in np.linspace(-sw * 0.7, sw * 0.7, int(r.integers(0, 4)) + 2)[1:-1]:
        parts.append(L(pts(x, sy - bh * 0.85, x, sy), color=2))
    splay = r.uniform(0.0, 0.12)
    for s in (-1, 1):
        parts.append(L(pts(s * sw, sy + 0.08, s * (sw + splay), sy + 0.08 + lh), color=2, width=0.045))
    if r.random() < 0.5:
        parts.append(L(pts(-sw * 0.8, sy + 0.08 + lh * 0.6, sw * 0.8, sy + 0.08 + lh * 0.6), color=2))
    if r.random() < 0.4:
        for s in (-1, 1):
            parts.append(L(pts(s * sw, sy - bh * 0.4, s * (sw + 0.12), sy - bh * 0.4, s * (sw + 0.12), sy), width=0.04))
    return parts


def bottle(r: G) -> list[Part]:
    bw, bh, nw, nh = r.uniform(0.22, 0.4), r.uniform(0.6, 0.9), r.uniform(0.06, 0.12), r.uniform(0.2, 0.45)
    y1 = 0.85
    y0 = y1 - bh
    sh = r.uniform(0.08, 0.25)
    parts = [P(pts(-nw, y0 - sh - nh, nw, y0 - sh - nh, nw, y0 - sh, bw, y0, bw, y1, -bw, y1, -bw, y0, -nw, y0 - sh),
               essential=True),
             P(rect(-nw - 0.02, y0 - sh - nh - 0.08, nw + 0.02, y0 - sh - nh), color=2)]
    if r.random() < 0.7:
        lt = r.uniform(0.1, 0.35)
        parts.append(P(rect(-bw, y0 + lt, bw, y0 + lt + r.uniform(0.15, 0.3)), color=1))
    return parts


def clock(r: G) -> list[Part]:
    cr = r.uniform(0.55, 0.8)
    parts = [P(ell(0, 0, cr, cr, n=32), essential=True)]
    nt = int(r.choice([0, 4, 12]))
    for i in range(nt):
        a = 2 * np.pi * i / nt
        parts.append(L(pts(0.85 * cr * np.cos(a), 0.85 * cr * np.sin(a), cr * 0.95 * np.cos(a), cr * 0.95 * np.sin(a))))
    a1, a2 = r.uniform(0, 2 * np.pi, 2)
    parts.append(L(pts(0, 0, 0.5 * cr * np.cos(a1), 0.5 * cr * np.sin(a1)), width=0.05, essential=True))
    parts.append(L(pts(0, 0, 0.8 * cr * np.cos(a2), 0.8 * cr * np.sin(a2)), width=0.035, essential=True))
    if r.random() < 0.4:
        for s in (-1, 1):
            parts.append(P(ell(s * cr * 0.7, -cr * 0.95, 0.15, 0.12, n=12), color=1))
    return parts


def guitar(r: G) -> list[Part]:
    lr, ur, nl = r.uniform(0.3, 0.42), r.uniform(0.2, 0.3), r.uniform(0.6, 0.9)
    ly = 0.9 - lr
    uy = ly - lr - ur * 0.6
    parts = [P(ell(0, ly, lr, lr), essential=True), P(ell(0, uy, ur, ur * 0.9), essential=True),
             P(rect(-0.05, uy - ur - nl, 0.05, uy - ur * 0.5), color=2, essential=True),
             P(ell(0, ly - lr * 0.4, 0.09, 0.09, n=12), color=2),
             P(rect(-0.09, uy - ur - nl - 0.15, 0.09, uy - ur - nl), color=1)]
    for i in range(int(r.integers(0, 4))):
        parts.append(L(pts(-0.03 + 0.02 * i, uy - ur - nl, -0.03 + 0.02 * i, ly + lr * 0.6), color=1, width=0.01))
    return parts


def shoe(r: G) -> list[Part]:
    heel, toe, ankle, sole = r.uniform(0.0, 0.35), r.uniform(0.3, 0.6), r.uniform(0.2, 0.8), r.uniform(0.05, 0.14)
    y = 0.4
    upper = pts(-0.8, y - sole - heel * 0.4, -0.75, y - ankle - 0.2, -0.35, y - ankle - 0.2,
                -0.2, y - 0.45, 0.9 - toe, y - 0.4, 0.9, y - 0.12, 0.9, y - sole, -0.8, y - sole)
    parts = [P(upper, essential=True), P(rect(-0.85, y - sole, 0.95, y), color=2, essential=True)]
    if heel > 0.08:
        parts.append(P(pts(-0.85, y, -0.55, y, -0.6, y + heel, -0.8, y + heel), color=2))
    for i in range(int(r.integers(0, 5))):
        x = -0.25 + 0.12 * i
        parts.append(L(pts(x, y - 0.42 + 0.02 * i, x + 0.1, y - 0.36 + 0.02 * i), color=1))
    if r.random() < 0.5:
        parts.append(L(pts(-0.7, y - sole - 0.1, 0.2, y - 0.25, 0.7, y - sole - 0.05), color=1, width=0.05))
    return parts


#: class name -> builder; 24 classes, names are real words.
SHAPES: dict[str, Callable[[G], list[Part]]] = {f.__name__: f for f in (
    apple, bicycle, bottle, candle, car, chair, clock, cup, fish, flower, guitar, house,
    key, kite, ladder, mushroom, rocket, sailboat, shoe, star, sun, table, tree, umbrella)}
