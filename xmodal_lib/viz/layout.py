"""Layout helpers that keep figure text readable and apart.

* :func:`span_parents`: a colour bar exactly as tall as the images it belongs to (an image drawn with
  ``aspect="equal"`` is often shorter than its slot; a full-slot bar then runs up beside its title);
* :func:`wrap_title` / :func:`wrap_suptitle` / :func:`clear_titles`: titles wrapped to their panel's
  (the figure's) width, colour bars kept clear of the titles;
* :func:`add_footer`: a line of text in a strip added under the figure (never over a panel);
* :func:`place_labels`: point labels placed where they do not overlap each other or the points;
* :func:`text_overlaps`: which texts / panels of a drawn figure overlap (what the tests check).
"""
from __future__ import annotations

import itertools
import textwrap
from typing import Sequence

__all__ = ["clear_titles", "fit_text", "wrap_title", "wrap_suptitle", "span_parents", "add_footer", "place_labels",
           "text_overlaps"]


def _renderer(fig):
    return fig.canvas.get_renderer()


def _apply(ax, renderer) -> None:
    """Give ``ax`` its drawn (aspect-adjusted, locator-placed) position."""
    locator = ax.get_axes_locator()
    ax.apply_aspect(locator(ax, renderer) if locator is not None else None)


def fit_text(t, width: float, renderer) -> bool:
    """Wrap the text artist ``t`` at word boundaries until every line is at most ``width`` pixels
    wide (or words cannot be split further); returns whether it was wrapped."""
    text = " ".join(t.get_text().split())
    if not text or t.get_window_extent(renderer).width <= width:
        return False
    t.set_text(text)
    chars = len(text)
    while t.get_window_extent(renderer).width > width and chars > 8:
        chars = max(8, int(chars * min(0.95, width / t.get_window_extent(renderer).width)))
        t.set_text(textwrap.fill(text, chars, break_long_words=False))
    return True


def wrap_title(ax, renderer=None) -> bool:
    """Wrap the title of ``ax`` until every line fits the panel's drawn width; returns whether it did."""
    if not ax.title.get_text():
        return False
    r = renderer or _renderer(ax.figure)
    _apply(ax, r)
    return fit_text(ax.title, ax.get_window_extent(r).width, r)


def wrap_suptitle(fig, margin: float = 0.96) -> bool:
    """Wrap the figure title to ``margin`` of the figure's width; returns whether it did."""
    if fig._suptitle is None:
        return False
    r = _renderer(fig)
    return fit_text(fig._suptitle, margin * fig.bbox.width, r)


class _SpanParents:
    """Axes locator of a colour bar: its x range as laid out, its y range that of the drawn parents."""

    def __init__(self, cax, parents, max_width_in: float = 0.15):
        self.cax = cax
        self.parents = list(parents)
        self.max_width_in = max_width_in

    def get_subplotspec(self):
        """The bar's grid cell, so that ``tight_layout`` lays the bar out (None: a free-standing bar)."""
        return self.cax.get_subplotspec()

    def __call__(self, cax, renderer):
        from matplotlib.transforms import Bbox  # lazy: keeps viz.layout free of matplotlib at import

        fig = cax.figure
        boxes = []
        for p in self.parents:
            _apply(p, renderer)
            boxes.append(p.get_position(original=False))
        pos = cax.get_position(original=True)
        width = min(pos.width, self.max_width_in / fig.get_size_inches()[0])
        y0, y1 = min(b.y0 for b in boxes), max(b.y1 for b in boxes)
        return Bbox.from_extents(pos.x0, y0, pos.x0 + width, y1)


def span_parents(cb, parents) -> None:
    """Make the (vertical) colour bar ``cb`` span exactly the drawn height of ``parents`` at every
    draw, whatever layout runs later; its width stays as laid out (at most 0.15 in)."""
    parents = list(parents) if isinstance(parents, (list, tuple)) else [parents]
    cb.ax.set_box_aspect(None)
    cb.ax.set_axes_locator(_SpanParents(cb.ax, parents))


def clear_titles(fig, gap: float = 0.04):
    """Keep panel titles clear of the colour bars beside their panels: every title is wrapped to its
    panel's width, and every colour bar that still runs into a title is lowered so its top ends
    ``gap`` (figure fraction) below the lowest title bottom of the panels it overlaps horizontally
    (bars placed by :func:`span_parents` follow their panels and need no lowering). Returns ``fig``."""
    fig.canvas.draw()  # title extents need a renderer
    r = _renderer(fig)
    bars = [a for a in fig.axes if hasattr(a, "_colorbar")]
    panels = [a for a in fig.axes if a not in bars]
    for ax in panels:
        wrap_title(ax, r)
    fig.canvas.draw()
    inv = fig.transFigure.inverted()
    for cb in bars:
        if isinstance(cb.get_axes_locator(), _SpanParents):
            continue
        box = cb.get_position()  # figure fraction
        tops = [inv.transform(ax.title.get_window_extent(r))[0, 1] for ax in panels if ax.title.get_text()
                and _overlap_x(inv.transform(ax.title.get_window_extent(r)), box)]
        if tops and box.y1 > min(tops) - gap:
            y1 = max(box.y0 + 0.3 * box.height, min(tops) - gap)
            cb.set_position([box.x0, box.y0, box.width, y1 - box.y0])
    return fig


def _overlap_x(extent, box) -> bool:
    """Does the text extent ``[[x0, y0], [x1, y1]]`` overlap the bbox ``box`` horizontally?"""
    return extent[0, 0] < box.x1 and extent[1, 0] > box.x0


def add_footer(fig, text: str, fontsize: float = 8.0):
    """Add ``text`` under everything drawn: the figure grows by a strip of one line and every panel,
    colour bar and figure text keeps its place in inches above it; the text goes just below the
    lowest of them (so never over a panel). Returns the text artist."""
    w, h = fig.get_size_inches()
    extra = 2.2 * fontsize / 72.0  # inches: one line and its margins
    big = h + extra

    def lift(y: float) -> float:
        return (y * h + extra) / big

    for ax in fig.axes:
        p = ax.get_position(original=True)
        ax.set_position([p.x0, lift(p.y0), p.width, p.height * h / big], which="both")
    for t in _figure_texts(fig):
        x, y = t.get_position()
        t.set_position((x, lift(y)))
    fig.set_size_inches(w, big)
    fig.canvas.draw()
    r = _renderer(fig)
    bottoms = [b.y0 for b in (a.get_tightbbox(r) for a in fig.axes if a.get_visible()) if b is not None]
    bottoms += [t.get_window_extent(r).y0 for t in fig.texts if t.get_visible() and t.get_text().strip()]
    y = (min(bottoms, default=0.0) / fig.dpi - 0.3 * fontsize / 72.0) / big  # figure fraction, >= one line
    return fig.text(0.01, max(y, 1.2 * fontsize / 72.0 / big), text, fontsize=fontsize, va="top", ha="left")


_DIRECTIONS = ((1, 1, "left", "bottom"), (1, -1, "left", "top"), (-1, 1, "right", "bottom"),
               (-1, -1, "right", "top"), (1.3, 0, "left", "center"), (-1.3, 0, "right", "center"),
               (0, 1.3, "center", "bottom"), (0, -1.3, "center", "top"))


def place_labels(ax, xy, names: Sequence[str], keep_clear: Sequence = (), fontsize: float = 7.0,
                 color: str = "0.15", radii: Sequence[float] = (4.0, 10.0, 17.0), placed: list | None = None,
                 marker_pt: float = 6.0) -> list:
    """Label the points ``xy`` [n, 2] (data coordinates) with ``names`` where no label overlaps another
    label, a point of ``xy`` or of ``keep_clear``, or leaves the axes: each label tries 8 directions
    at growing offsets (``radii``, points; a thin leader line beyond the first) and is left out when
    none is free. ``placed`` (display boxes of labels already drawn) is extended in place, so several
    calls share it. Freeze the axis limits first. Returns the annotations drawn."""
    fig = ax.figure
    r = _renderer(fig)
    placed = [] if placed is None else placed
    pts = [tuple(map(float, p)) for p in list(xy) + list(keep_clear)]
    half = marker_pt * fig.dpi / 72.0 / 2
    disp = ax.transData.transform(pts) if pts else []
    marks = [(x - half, y - half, x + half, y + half) for x, y in disp]
    frame = ax.get_window_extent(r)
    out = []
    for (x, y), name in zip(xy, names):
        for rad, (dx, dy, ha, va) in itertools.product(radii, _DIRECTIONS):
            arrow = dict(arrowstyle="-", lw=0.5, color=color, shrinkA=0, shrinkB=2) if rad > radii[0] else None
            a = ax.annotate(name, (float(x), float(y)), xytext=(dx * rad, dy * rad), textcoords="offset points",
                            fontsize=fontsize, color=color, ha=ha, va=va, arrowprops=arrow, zorder=4,
                            bbox=dict(boxstyle="square,pad=0.05", fc="white", ec="none", alpha=0.7))
            b = _text_box(a, r)
            inside = frame.x0 <= b[0] and b[2] <= frame.x1 and frame.y0 <= b[1] and b[3] <= frame.y1
            if inside and not any(_hit(b, o) for o in placed + marks):
                placed.append(b)
                out.append(a)
                break
            a.remove()
    return out


def _text_box(t, renderer, pad: float = 1.0) -> tuple[float, float, float, float]:
    """Display box of the text of ``t`` (an annotation's arrow excluded), grown by ``pad`` pixels."""
    from matplotlib.text import Annotation, Text  # lazy: keeps viz.layout free of matplotlib at import

    if isinstance(t, Annotation):
        t.update_positions(renderer)  # its text transform follows ``xytext``/``textcoords`` only then
    e = Text.get_window_extent(t, renderer)
    return (e.x0 - pad, e.y0 - pad, e.x1 + pad, e.y1 + pad)


def _hit(a, b, tol: float = 0.0) -> bool:
    return a[0] < b[2] - tol and b[0] < a[2] - tol and a[1] < b[3] - tol and b[1] < a[3] - tol


def _texts_of(ax):
    """(name, artist) of the visible texts of an axes: titles, axis labels, tick labels in view,
    annotations and texts, and the legend (as one box)."""
    items = [(f"title {t.get_text()!r}", t) for t in (ax.title, ax._left_title, ax._right_title)]
    for axis, (lo, hi) in ((ax.xaxis, sorted(ax.get_xlim())), (ax.yaxis, sorted(ax.get_ylim()))):
        if not (ax.axison and axis.get_visible()):  # ``ax.axis("off")`` draws no axis
            continue
        items.append((f"label {axis.label.get_text()!r}", axis.label))
        span = (hi - lo) * 1e-6
        for t, loc in zip(axis.get_majorticklabels(), axis.get_majorticklocs()):
            if lo - span <= loc <= hi + span:
                items.append((f"tick {t.get_text()!r}", t))
    items += [(f"text {t.get_text()!r}", t) for t in ax.texts]
    if ax.get_legend() is not None:
        items.append(("legend", ax.get_legend()))
    return [(n, a) for n, a in items if a.get_visible() and (not hasattr(a, "get_text") or a.get_text().strip())]


def text_overlaps(fig, tol: float = 1.0) -> list[tuple[str, str]]:
    """Draw ``fig`` and return the pairs that overlap by more than ``tol`` pixels among its visible
    texts (titles, suptitle, axis and tick labels, colour-bar labels, annotations, figure texts,
    legends) and its panels' drawn frames (colour bars included). A text is not checked against
    its own panel (tick labels and annotations lie on it by design)."""
    fig.canvas.draw()
    r = _renderer(fig)
    items = []  # (name, owner axes or None, box)
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        kind = "colour bar" if hasattr(ax, "_colorbar") else "panel"
        if ax.axison or ax.images or kind == "colour bar":
            e = ax.get_window_extent(r)
            items.append((f"{kind} {ax.get_title()!r}", ax, (e.x0, e.y0, e.x1, e.y1)))
        for name, t in _texts_of(ax):
            items.append((name, ax, _text_box(t, r, 0.0) if hasattr(t, "get_text") else _box(t, r)))
    items += [(f"figure text {t.get_text()!r}", None, _text_box(t, r, 0.0)) for t in _figure_texts(fig)
              if t.get_visible() and t.get_text().strip()]
    items += [("figure legend", None, _box(lg, r)) for lg in fig.legends]
    return [(a[0], b[0]) for a, b in itertools.combinations(items, 2)
            if (a[1] is None or a[1] is not b[1]) and _hit(a[2], b[2], tol)]


def _figure_texts(fig) -> list:
    """The figure's own texts, its suptitle included once."""
    return list(fig.texts) + [t for t in (fig._suptitle,) if t is not None and t not in fig.texts]


def _box(artist, renderer) -> tuple[float, float, float, float]:
    e = artist.get_window_extent(renderer)
    return (e.x0, e.y0, e.x1, e.y1)
