"""Explorer: model-aware explanation figures, callbacks without a browser, drawn-sketch preprocessing."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
import torch

from xmodal_lib.data.index import DataError, Record
from xmodal_lib.data.strokes import render_strokes
from xmodal_lib.data.transforms import ImageLoader
from xmodal_lib.viz import explorer as xp

SIZE = 32


@pytest.fixture(scope="module")
def zse():
    from xmodal_lib.methods.zse.model import ZSESBIR, ZSEConfig

    torch.manual_seed(0)
    return ZSESBIR(ZSEConfig(img_size=SIZE, patch_size=8, dim=32, depth=2, heads=2, ca_heads=2,
                                   ca_ffn=32, rn_dim=8, prune_layers=(2,)))


@pytest.fixture(scope="module")
def zse_pruned():
    from xmodal_lib.methods.zse.model import ZSESBIR, ZSEConfig

    torch.manual_seed(0)
    return ZSESBIR(ZSEConfig(img_size=SIZE, patch_size=8, dim=32, depth=2, heads=2, ca_heads=2,
                                   ca_ffn=32, rn_dim=8, keep_rate=0.7, prune_layers=(1, 2),
                                   rn_tokens="grid"))


@pytest.fixture(scope="module")
def teacher():
    from xmodal_lib.methods.xmodalvit.model import build_teacher

    torch.manual_seed(0)
    return build_teacher("vit_tiny_patch16_224", img_size=SIZE, xma_depth=2, patch_size=8, depth=1,
                         embed_dim=48, num_heads=3)


@pytest.fixture(scope="module")
def catn():
    from xmodal_lib.methods.crossatnet.model import CrossATNet, CrossATNetConfig

    torch.manual_seed(0)
    return CrossATNet(CrossATNetConfig(backbone="test_resnet", img_size=SIZE, output_stride=8, embed_dim=16,
                                       attn_dim=8, hash_bits=(8,)))


def _images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, SIZE, SIZE, generator=g) * 2 - 1  # "half" normalised


def _sketches(n: int) -> torch.Tensor:
    x = torch.ones(n, 3, SIZE, SIZE)
    for i in range(n):
        x[i, :, 4 + i:20 + i, 10] = -1.0   # a vertical stroke
        x[i, :, 12, 3:25] = -1.0           # and a horizontal one
    return x


def test_explain_pair_each_method(zse, zse_pruned, teacher, catn):
    sk, ph = _sketches(1)[0], _images(1)[0]
    for method, model in (("zse", zse), ("zse", zse_pruned), ("xmodalvit", teacher), ("crossatnet", catn)):
        fig = xp.explain_pair(method, model, sk, ph)
        assert len(fig.axes) >= 3
        plt.close(fig)
    with pytest.raises(ValueError, match="method"):
        xp.explain_pair("nope", zse, sk, ph)


def test_zse_explanation_honours_token_selection(zse_pruned):
    e = xp.zse_explain(zse_pruned, _sketches(1)[0], _images(1)[0])
    n = (SIZE // 8) ** 2
    assert len(e.sketch_kept) < n and e.sketch_tokens.shape[0] == len(e.sketch_kept)
    assert [a.shape[-1] for a in e.sketch_attn] == [len(p) for p in e.sketch_attn_pos]
    for i, j, _ in e.correspondences(top_n=5):
        assert i in e.sketch_kept.tolist() and j in e.photo_kept.tolist()
    assert 0.0 < e.rn_score < 1.0


def test_xmodal_explanation_shapes(teacher):
    e = xp.xmodal_explain(teacher, _sketches(1)[0], _images(1)[0])
    n = (SIZE // 8) ** 2
    assert isinstance(e, xp.Explanation) and e.method == "xmodalvit" and len(e.photo_attn) == 2
    assert e.photo_attn[0].shape == (3, n) and e.sketch_attn[0].shape == (3, n)  # sketch [CLS] -> photo, vice versa
    assert len(e.photo_to_sketch_cls) == 2 and e.photo_to_sketch_cls[0].shape == (3,)


def _callbacks(zse, teacher, catn, loader=None):
    from xmodal_lib.methods.xmodalvit.model import build_students

    torch.manual_seed(1)
    students = build_students("vit_tiny_patch16_224", out_dim=16, img_size=SIZE, patch_size=8, depth=1,
                              embed_dim=48, num_heads=3)
    photos, labels = _images(12), [f"c{i % 3}" for i in range(12)]
    gal = {"zse": xp.ExplorerGallery("zse", zse, photos, labels),
           "xmodalvit": xp.ExplorerGallery("xmodalvit", students, photos, labels, explain_model=teacher),
           "crossatnet": xp.ExplorerGallery("crossatnet", catn, photos, labels)}
    return xp.ExplorerCallbacks(gal, _sketches(3), ["c0", "c1", "c2"], loader=loader, k=5)


def test_callbacks_produce_figures_without_browser(zse, teacher, catn):
    cb = _callbacks(zse, teacher, catn)
    search, expl = cb.select_query(1)
    assert len(search.axes) == 5 + 1          # query + top-5
    assert "c1" in search.axes[0].get_title()
    for f in (search, expl):
        plt.close(f)
    for m in ("xmodalvit", "crossatnet"):
        s, e = cb.select_method(m)
        assert cb.method == m and len(e.axes) >= 3
        plt.close(s)
        plt.close(e)
    s, e = cb.set_k(3)
    assert len(s.axes) == 4
    plt.close(s)
    plt.close(e)
    e = cb.select_rank(2)
    assert "rank 3" in e.texts[-1].get_text()
    plt.close(e)
    with pytest.raises(ValueError):
        cb.select_query(99)
    with pytest.raises(ValueError):
        cb.select_method("nope")


def test_search_results_follow_scores(zse):
    photos, labels = _images(8), [str(i) for i in range(8)]
    g = xp.ExplorerGallery("zse", zse, photos, labels)
    q = _sketches(1)[0]
    scores, idx = g.search(q, 8)
    emb = g.ensure_embeddings()
    with torch.no_grad():
        qe = zse.eval().encode_sketch(q[None])
    ref = torch.nn.functional.cosine_similarity(qe, emb)
    assert idx.tolist() == torch.argsort(ref, descending=True, stable=True).tolist()


STROKES = [[(30.0, 40.0), (120.0, 60.0), (200.0, 210.0)], [(60.0, 200.0), (180.0, 30.0)], [(100.0, 100.0), (101.0, 140.0)]]


def test_canvas_strokes_preprocess_like_a_sketch_file(tmp_path):
    loader = ImageLoader(SIZE, normalize="half", sketch_crop=True)
    # the same drawing stored as a sketch file (as the stroke renderer writes it) and loaded as a record
    arr = xp.strokes_to_array(STROKES)
    assert arr.shape == (7, 3) and arr[:, 2].tolist() == [0, 0, 1, 0, 1, 0, 1]
    f = tmp_path / "drawn.png"
    render_strokes(arr, size=256, frame=256.0, width=3.0).save(f)
    from_file = loader.load(Record(f, "sketch", "x", "", "test"))
    from_canvas = xp.strokes_to_tensor(STROKES, loader, canvas_size=256.0)
    assert from_canvas.shape == (3, SIZE, SIZE)
    assert torch.equal(from_canvas, from_file)
    assert from_canvas.min() < 0.0 and from_canvas.max() == 1.0       # ink on white, "half" normalised
    # a canvas of another size is scaled into the same frame
    half = [[(x / 2, y / 2) for x, y in s] for s in STROKES]
    assert torch.allclose(xp.strokes_to_tensor(half, loader, canvas_size=128.0), from_file, atol=0.05)
    with pytest.raises(DataError, match="blank"):
        xp.strokes_to_tensor([], loader)


def test_search_drawn_and_widgets_build(zse, teacher, catn):
    pytest.importorskip("ipywidgets")
    loader = ImageLoader(SIZE, normalize="half", sketch_crop=True)
    cb = _callbacks(zse, teacher, catn, loader=loader)
    s, e = cb.search_drawn(STROKES)
    assert cb.drawn is not None and "class unknown" in s._suptitle.get_text()
    plt.close(s)
    plt.close(e)
    box = xp.build_explorer(cb)
    assert box.children  # controls + panes
    # simulate mouse events on the canvas and press Search
    got = []
    canvas_box = xp.drawing_canvas(lambda strokes: got.append(strokes), size=64)
    c = canvas_box.canvas
    c._mouse_down_callbacks(5.0, 5.0)
    c._mouse_move_callbacks(20.0, 30.0)
    c._mouse_move_callbacks(40.0, 50.0)
    c._mouse_up_callbacks(40.0, 50.0)
    c._mouse_move_callbacks(60.0, 60.0)   # pen up: ignored
    canvas_box.children[1].children[0].click()
    assert got == [[[(5.0, 5.0), (20.0, 30.0), (40.0, 50.0)]]]
    plt.close("all")


def test_explorer_panels_are_big_and_keep_text_apart(zse, teacher, catn):
    """06_explorer_*: thumbnails of >= 1.6 in with readable titles; the explanation's rank line
    under the panels, no title over a colour bar."""
    from xmodal_lib.viz.layout import text_overlaps

    cb = _callbacks(zse, teacher, catn)
    search, expl = cb.update()
    search.canvas.draw()
    thumbs = [a for a in search.axes if a.images]
    assert len(thumbs) == 6  # query + top-5
    for a in thumbs:
        e = a.get_window_extent(search.canvas.get_renderer())
        assert min(e.width, e.height) / search.dpi >= 1.6
    assert min(a.title.get_fontsize() for a in thumbs) >= 8
    for f in (search, expl):
        assert text_overlaps(f) == []
    r = expl.canvas.get_renderer()
    rank = expl.texts[-1]
    assert rank.get_text().startswith("rank 1")
    assert rank.get_window_extent(r).y1 <= min(a.get_tightbbox(r).y0 for a in expl.axes)  # below every panel
    for a in expl.axes:
        if a.images and not hasattr(a, "_colorbar"):
            e = a.get_window_extent(r)
            assert min(e.width, e.height) / expl.dpi >= 1.6
    plt.close(search)
    plt.close(expl)
