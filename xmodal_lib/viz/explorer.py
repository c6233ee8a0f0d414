"""Interactive sketch-and-search explorer: model-aware explanations, search, drawing canvas.

Everything a widget does is a plain function or an :class:`ExplorerCallbacks` method that
returns a matplotlib figure, so it is testable without a browser; :func:`build_explorer` and
:func:`drawing_canvas` only wire ipywidgets / ipycanvas to them. Pixels drawn on the canvas go
through the SAME preprocessing as sketch files (:func:`xmodal_lib.data.strokes.strokes_to_tensor`).

The per-method explanation figures live in :mod:`xmodal_lib.viz.explain_models` (re-exported
here: :func:`explain_pair`, :func:`zse_explain`, ...).
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from xmodal_lib.data.strokes import (  # noqa: F401 (re-exported: the explorer's drawn sketches)
    Stroke,
    sketch_image_to_tensor,
    strokes_to_array,
    strokes_to_image,
    strokes_to_tensor,
)
from xmodal_lib.infra.devices import module_device
from xmodal_lib.retrieval.sanity import check_query_dependent
from xmodal_lib.retrieval.search import topk
from xmodal_lib.viz import explain as ex
from xmodal_lib.viz.explain_models import (
    METHODS,
    Explanation,
    _batch,
    crossatnet_explain,
    crossatnet_pair_figure,
    explain,
    explain_pair,
    pair_figure,
    xmodal_explain,
    xmodal_pair_figure,
    zse_attention_figure,
    zse_explain,
    zse_pair_figure,
)
from xmodal_lib.viz.layout import add_footer, clear_titles
from xmodal_lib.viz.retrieval_plots import plot_retrieval_strips, strip_row

__all__ = [
    "METHODS", "Explanation", "explain", "pair_figure", "zse_explain", "zse_attention_figure", "zse_pair_figure",
    "xmodal_explain", "xmodal_pair_figure", "crossatnet_explain", "crossatnet_pair_figure", "explain_pair",
    "ExplorerGallery",
    "search_and_show", "strokes_to_array", "strokes_to_image", "sketch_image_to_tensor", "strokes_to_tensor",
    "ExplorerCallbacks", "clear_titles", "figure_png", "drawing_canvas", "build_explorer",
]


# --------------------------------------------------------------------------- search
@dataclass
class ExplorerGallery:
    """A method's searchable photo gallery: images, labels and embeddings from ``model``.

    ``model`` embeds (``encode_sketch``/``encode_photo``); ``explain_model`` draws the pair
    figures (the XModalViT teacher; defaults to ``model``). ``metric`` as in
    :func:`xmodal_lib.retrieval.search.similarity`.
    """

    method: str
    model: Any
    images: torch.Tensor                  # (G, 3, H, W)
    labels: list[str]
    embeddings: torch.Tensor | None = None  # (G, D); computed on first use
    explain_model: Any = None
    metric: str = "cosine"
    batch_size: int = 64
    query_images: torch.Tensor | None = None  # (Q, 3, H, W) query sketches in this method's preprocessing
    sketch_loader: Any = None                 # ImageLoader for drawings (this method's sketch path)
    norm: str | None = None                   # input normalisation ("none" | "half" | "imagenet") for display
    _history: dict = field(default_factory=dict, init=False, repr=False)  # k -> {query bytes: top-k}

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"ExplorerGallery.method: expected one of {METHODS}, got {self.method!r}")
        if len(self.labels) != len(self.images):
            raise ValueError(f"ExplorerGallery: {len(self.labels)} labels for {len(self.images)} images")

    @torch.no_grad()
    def ensure_embeddings(self) -> torch.Tensor:
        if self.embeddings is None:
            self.model.eval()
            chunks = [self.model.encode_photo(self.images[a:a + self.batch_size].to(module_device(self.model))).cpu()
                      for a in range(0, len(self.images), self.batch_size)]
            self.embeddings = torch.cat(chunks)  # (G, D)
        return self.embeddings

    @torch.no_grad()
    def search(self, sketch: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` (scores, gallery indices) for one preprocessed sketch ``(3, H, W)``."""
        self.model.eval()
        q = self.model.encode_sketch(_batch(sketch, self.model)).cpu()  # (1, D)
        k = max(1, min(int(k), len(self.images)))
        scores, idx = topk(q[0], self.ensure_embeddings(), k, metric=self.metric)
        seen = self._history.setdefault(k, {})
        seen[sketch.detach().cpu().numpy().tobytes()] = tuple(idx.tolist())
        check_query_dependent(list(seen.values()), where=f"explorer ({self.method})")  # warns if all the same
        return scores, idx


THUMB_IN = 1.8  # inches per thumbnail of the explorer's result strips


def search_and_show(query_sketch: torch.Tensor, gallery: ExplorerGallery, k: int = 10,
                    query_label: str | None = None, title: str = ""):
    """Rank the gallery for one sketch and draw the strip (green = same class, red = other; THUMB_IN in thumbs)."""
    scores, idx = gallery.search(query_sketch, k)
    show = [ex.denormalize(gallery.images[int(i)], gallery.norm) for i in idx]
    query_sketch = ex.denormalize(query_sketch, gallery.norm)
    gallery = _Shown(gallery.method, show, [gallery.labels[int(i)] for i in idx])
    idx = torch.arange(len(show))
    if query_label is None:  # a drawing: its class is unknown, so nothing is marked right or wrong
        row = strip_row(query_sketch, "?", gallery.images, gallery.labels, idx.tolist(), scores.tolist(),
                        title or "drawn query", correct=[None] * len(idx))
        title = f"{gallery.method}: top-{len(idx)} (drawing: class unknown)"
        return plot_retrieval_strips([row], title=title, cell=THUMB_IN)
    row = strip_row(query_sketch, query_label, gallery.images, gallery.labels, idx.tolist(), scores.tolist(), title)
    return plot_retrieval_strips([row], title=f"{gallery.method}: top-{len(idx)}", cell=THUMB_IN)


@dataclass
class _Shown:
    """The top-k images of a search, ready for display (indices re-based to 0..k-1)."""

    method: str
    images: list
    labels: list[str]


# --------------------------------------------------------------------------- callbacks
@dataclass
class ExplorerCallbacks:
    """State and callbacks of the explorer; every method returns matplotlib figure(s).

    ``galleries`` maps method name -> :class:`ExplorerGallery`. Query sketches come from the
    gallery's ``query_images`` (each method's own preprocessing) or else from ``queries``; the
    labels are ``query_labels``. A drawing is preprocessed by the gallery's ``sketch_loader``
    (else ``loader``), exactly like a sketch file of that method.
    """

    galleries: dict[str, ExplorerGallery]
    queries: torch.Tensor | None
    query_labels: list[str]
    loader: Any = None
    k: int = 10
    method: str = ""
    query_index: int = 0
    rank: int = 0
    strokes: list | None = field(default=None, repr=False)
    canvas_size: float = 256.0

    def __post_init__(self) -> None:
        if not self.galleries:
            raise ValueError("ExplorerCallbacks: no gallery given")
        self.method = self.method or next(iter(self.galleries))
        for name, g in self.galleries.items():
            n = len(g.query_images) if g.query_images is not None else (len(self.queries) if self.queries is not None else -1)
            if n != len(self.query_labels):
                raise ValueError(f"ExplorerCallbacks: {len(self.query_labels)} query labels but {n} queries for {name!r}")

    @property
    def gallery(self) -> ExplorerGallery:
        return self.galleries[self.method]

    @property
    def drawn(self) -> torch.Tensor | None:
        """The current drawing preprocessed for the current method (None when a file query is used)."""
        if self.strokes is None:
            return None
        loader = self.gallery.sketch_loader or self.loader
        if loader is None:
            raise ValueError("ExplorerCallbacks: a loader is needed to preprocess drawings")
        return strokes_to_tensor(self.strokes, loader, self.canvas_size)

    def _query(self) -> tuple[torch.Tensor, str | None]:
        if self.strokes is not None:
            return self.drawn, None
        qs = self.gallery.query_images if self.gallery.query_images is not None else self.queries
        return qs[self.query_index], self.query_labels[self.query_index]

    def search_figure(self):
        q, lab = self._query()
        return search_and_show(q, self.gallery, self.k, lab)

    def explain_figure(self):
        """Explanation of the query and its result at ``rank`` (0 = top-1)."""
        q, lab = self._query()
        scores, idx = self.gallery.search(q, max(self.k, self.rank + 1))
        j = int(idx[min(self.rank, len(idx) - 1)])
        g = self.gallery
        verdict = "" if lab is None else ("correct" if g.labels[j] == lab else "wrong")
        fig = explain_pair(g.method, g.explain_model or g.model, q, g.images[j], norm=g.norm)
        add_footer(fig, f"rank {self.rank + 1}: {g.labels[j]} {verdict}", fontsize=9)  # below the panels
        return fig

    def update(self):
        """(search figure, explanation figure) for the current state."""
        return self.search_figure(), self.explain_figure()

    def select_query(self, index: int):
        if not 0 <= int(index) < len(self.query_labels):
            raise ValueError(f"query index {index} out of range 0..{len(self.query_labels) - 1}")
        self.query_index, self.strokes = int(index), None
        return self.update()

    def select_method(self, method: str):
        if method not in self.galleries:
            raise ValueError(f"method: expected one of {list(self.galleries)}, got {method!r}")
        self.method = method
        return self.update()

    def set_k(self, k: int):
        if int(k) < 1:
            raise ValueError(f"k: expected >= 1, got {k}")
        self.k = int(k)
        self.rank = min(self.rank, self.k - 1)
        return self.update()

    def select_rank(self, rank: int):
        self.rank = max(0, min(int(rank), self.k - 1))
        return self.explain_figure()

    def search_drawn(self, strokes: Sequence[Stroke], canvas_size: float = 256.0):
        """Use a drawing as the query (preprocessed like a sketch file) -> (search, explanation)."""
        if self.gallery.sketch_loader is None and self.loader is None:
            raise ValueError("ExplorerCallbacks: a loader is needed to preprocess drawings")
        strokes_to_array(strokes)  # blank drawings fail here, before any state changes
        self.strokes, self.canvas_size = [list(s) for s in strokes], float(canvas_size)
        return self.update()


# --------------------------------------------------------------------------- widgets
def figure_png(fig) -> bytes:
    """PNG bytes of a matplotlib figure, drawn on its own Agg canvas (independent of the backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: keeps viz.explorer free of matplotlib at import

    FigureCanvasAgg(fig)  # detach from the notebook backend's manager
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=90)
    return buf.getvalue()


def _show(out, figs) -> None:
    import matplotlib.pyplot as plt  # lazy: keeps viz.explorer free of matplotlib at import
    from IPython.display import Image, display  # lazy: optional extra IPython

    figs = figs if isinstance(figs, (tuple, list)) else (figs,)
    pngs = [figure_png(f) for f in figs]  # render everything before touching the output widget
    for f in figs:
        plt.close(f)
    out.clear_output(wait=True)
    with out:
        for png in pngs:
            display(Image(data=png))


def drawing_canvas(on_search: Callable[[list[list[tuple[float, float]]]], None], size: int = 256,
                   line_width: float = 4.0):
    """A mouse drawing canvas (ipycanvas) with Search / Clear buttons; returns the widget box.

    ``on_search(strokes)`` receives the polylines in canvas pixels. Without ipycanvas a text box
    accepting the strokes as JSON is shown instead.
    """
    import ipywidgets as W  # lazy: optional extra ipywidgets

    strokes: list[list[tuple[float, float]]] = []
    search, clear = W.Button(description="Search", button_style="primary"), W.Button(description="Clear")
    status = W.Label("draw a sketch with the mouse, then Search")
    try:
        from ipycanvas import Canvas  # lazy: optional dependency, ImportError handled
    except ImportError:  # pragma: no cover - ipycanvas is installed in the project venv
        text = W.Textarea(placeholder="[[[x, y], [x, y], ...], ...]  (strokes, canvas pixels)",
                          layout=W.Layout(width=f"{size}px", height="120px"))

        def _go(_):
            on_search(json.loads(text.value or "[]"))
        search.on_click(_go)
        clear.on_click(lambda _: setattr(text, "value", ""))
        return W.VBox([W.Label("ipycanvas missing: paste strokes as JSON"), text, W.HBox([search, clear])])

    canvas = Canvas(width=size, height=size, layout=W.Layout(border="1px solid #999"))
    canvas.fill_style, canvas.stroke_style, canvas.line_width = "white", "black", line_width
    canvas.fill_rect(0, 0, size, size)
    drawing = {"on": False}

    def down(x, y):
        drawing["on"] = True
        strokes.append([(x, y)])

    def move(x, y):
        if drawing["on"]:
            x0, y0 = strokes[-1][-1]
            canvas.stroke_line(x0, y0, x, y)
            strokes[-1].append((x, y))

    def up(x, y):
        drawing["on"] = False

    canvas.on_mouse_down(down)
    canvas.on_mouse_move(move)
    canvas.on_mouse_up(up)

    def _clear(_):
        strokes.clear()
        canvas.fill_rect(0, 0, size, size)

    def _search(_):
        try:
            on_search([list(s) for s in strokes])
            status.value = f"searched with {len(strokes)} strokes"
        except ValueError as e:  # DataError is a ValueError (blank drawing)
            status.value = str(e)

    search.on_click(_search)
    clear.on_click(_clear)
    box = W.VBox([canvas, W.HBox([search, clear]), status])
    box.canvas, box.strokes = canvas, strokes  # for programmatic use and tests
    return box


def build_explorer(cb: ExplorerCallbacks, canvas_size: int = 256):
    """The explorer: query / method / k / rank controls, result and explanation panes, canvas."""
    import ipywidgets as W  # lazy: optional extra ipywidgets

    q = W.Dropdown(options=[(f"{i}: {lab}", i) for i, lab in enumerate(cb.query_labels)],
                   value=cb.query_index, description="query")
    m = W.Dropdown(options=list(cb.galleries), value=cb.method, description="method")
    k = W.IntSlider(value=cb.k, min=1, max=min(30, min(len(g.images) for g in cb.galleries.values())),
                    description="k")
    r = W.IntSlider(value=cb.rank, min=0, max=cb.k - 1, description="explain rank")
    out_s, out_e = W.Output(), W.Output()

    def refresh(figs):
        pngs = [figure_png(f) for f in figs]  # both rendered before either pane changes
        for out, png, f in zip((out_s, out_e), pngs, figs):
            import matplotlib.pyplot as plt  # lazy: only needed on this branch
            from IPython.display import Image, display  # lazy: only needed on this branch

            plt.close(f)
            out.clear_output(wait=True)
            with out:
                display(Image(data=png))

    q.observe(lambda ch: refresh(cb.select_query(ch["new"])), names="value")
    m.observe(lambda ch: refresh(cb.select_method(ch["new"])), names="value")

    def on_k(ch):
        r.max = ch["new"] - 1
        refresh(cb.set_k(ch["new"]))

    k.observe(on_k, names="value")
    r.observe(lambda ch: _show(out_e, cb.select_rank(ch["new"])), names="value")
    can_draw = cb.loader is not None or all(g.sketch_loader is not None for g in cb.galleries.values())
    canvas = drawing_canvas(lambda strokes: refresh(cb.search_drawn(strokes, canvas_size)), canvas_size) \
        if can_draw else W.Label("(no loader: drawing disabled)")
    refresh(cb.update())
    controls = W.VBox([q, m, k, r, W.HTML("<b>or draw a query</b>"), canvas],
                      layout=W.Layout(min_width=f"{max(300, canvas_size + 20)}px"))
    box = W.HBox([controls, W.VBox([out_s, out_e])])
    box.add_class("xmodal-explorer")  # a handle for browser tests / screenshots
    return box
