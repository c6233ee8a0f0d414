"""Layout fixes for figures whose colour bars were added after ``tight_layout`` (the explorer's
pair figures): colour bars placed that way can run into the titles of neighbouring panels."""
from __future__ import annotations

import textwrap

__all__ = ["clear_titles"]


def clear_titles(fig, gap: float = 0.04):
    """Keep panel titles clear of the colour bars beside their panels: every title is wrapped to its
    panel's width, and every colour bar is lowered so its top ends ``gap`` (figure fraction) below
    the lowest title bottom of the panels it overlaps horizontally. Returns ``fig``."""
    fig.canvas.draw()  # title extents need a renderer
    r = fig.canvas.get_renderer()
    bars = [a for a in fig.axes if hasattr(a, "_colorbar")]
    panels = [a for a in fig.axes if a not in bars]
    for ax in panels:
        t = ax.title
        width = ax.get_window_extent(r).width
        if t.get_text() and t.get_window_extent(r).width > width:
            chars = max(12, int(len(t.get_text()) * width / t.get_window_extent(r).width))
            t.set_text(textwrap.fill(t.get_text(), chars))
    fig.canvas.draw()
    inv = fig.transFigure.inverted()
    for cb in bars:
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
