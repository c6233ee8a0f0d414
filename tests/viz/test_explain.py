"""Explanation functions: heatmaps, token correspondences, patch replacement."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from xmodal_lib.viz import explain as ex

G = 4          # grid
S = 32         # image size -> 8 px cells


def _distinct_tokens(n: int, d: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g)


def _sketch_with_ink(cells: list[int]) -> np.ndarray:
    """White image with a short black stroke inside each listed grid cell."""
    img = np.ones((S, S, 3), dtype=np.float32)
    c = S // G
    for p in cells:
        r, col = divmod(p, G)
        img[r * c + 2:r * c + 6, col * c + 3:col * c + 5] = 0.0
    return img


def _photo_cells() -> np.ndarray:
    """Photo whose cell p has the constant colour value (p + 1) / (G*G + 1) in every channel."""
    img = np.zeros((S, S, 3), dtype=np.float32)
    c = S // G
    for p in range(G * G):
        r, col = divmod(p, G)
        img[r * c:(r + 1) * c, col * c:(col + 1) * c] = (p + 1) / (G * G + 1)
    return img


def _cell(img: np.ndarray, p: int) -> np.ndarray:
    c = S // G
    r, col = divmod(p, G)
    return img[r * c:(r + 1) * c, col * c:(col + 1) * c]


def test_heatmap_shapes_cls_and_heads():
    attn = torch.rand(3, G * G + 1)  # (heads, 1 + patches)
    hm = ex.attention_to_heatmap(attn, G, S)
    assert hm.shape == (S, S) and hm.min() == pytest.approx(0) and hm.max() == pytest.approx(1)
    # a single hot patch lands in the right cell (nearest upsampling)
    one = torch.zeros(G * G)
    one[6] = 1.0
    hm = ex.attention_to_heatmap(one, G, S, mode="nearest")
    r, c = divmod(6, G)
    assert hm[r * 8 + 4, c * 8 + 4] == 1.0 and hm.sum() == 64


def test_heatmap_with_kept_indices_and_bad_length():
    kept = [1, 5, 9]
    hm = ex.attention_to_heatmap(torch.tensor([0.0, 1.0, 0.5]), G, S, kept_indices=kept, mode="nearest")
    assert hm[(5 // G) * 8 + 1, (5 % G) * 8 + 1] == 1.0
    assert hm[0, 0] == 0.0  # pruned position 0
    with pytest.raises(ValueError, match="kept indices"):
        ex.attention_to_heatmap(torch.rand(7), G, S)


def test_identical_tokens_give_identity_mapping():
    t = _distinct_tokens(G * G)
    mapping = ex.patch_mapping(t, t.clone(), G)
    assert mapping.tolist() == list(range(G * G))
    matches = ex.token_correspondences(t, t, top_n=G * G)
    assert sorted((i, j) for i, j, _ in matches) == [(i, i) for i in range(G * G)]
    assert all(s == pytest.approx(1.0, abs=1e-5) for _, _, s in matches)


def test_patch_replacement_shape_and_only_ink_replaced():
    ink = [0, 5, 10, 15]
    sketch = _sketch_with_ink(ink)
    photo = _photo_cells()
    t = _distinct_tokens(G * G)
    out = ex.patch_replacement(sketch, photo, t, t, G, ink_mask_threshold=0.01)
    assert out.shape == (S, S, 3)
    for p in range(G * G):
        if p in ink:
            np.testing.assert_allclose(_cell(out, p), _cell(photo, p))   # identity mapping
        else:
            assert np.all(_cell(out, p) == 1.0)                         # white, untouched


def test_patch_replacement_follows_argmax_cosine():
    sketch = _sketch_with_ink([0, 3])
    photo = _photo_cells()
    pt = _distinct_tokens(G * G, seed=1)
    st = _distinct_tokens(G * G, seed=2)
    st[0] = pt[9] * 3.0            # cosine 1 with photo patch 9 (scale-invariant)
    st[3] = pt[12] + 1e-3
    out = ex.patch_replacement(sketch, photo, st, pt, G)
    np.testing.assert_allclose(_cell(out, 0), _cell(photo, 9))
    np.testing.assert_allclose(_cell(out, 3), _cell(photo, 12))


def test_patch_replacement_with_token_selection():
    ink = [1, 2, 6]
    sketch = _sketch_with_ink(ink)
    photo = _photo_cells()
    full = _distinct_tokens(G * G)
    s_kept = [1, 2, 4, 8]          # sketch position 6 was pruned
    p_kept = [2, 3, 7, 11, 13]
    st = full[s_kept].clone()
    st[0] = full[13]               # sketch cell 1 -> photo cell 13
    st[1] = full[7]                # sketch cell 2 -> photo cell 7
    pt = full[p_kept]
    out = ex.patch_replacement(sketch, photo, st, pt, G, kept_indices=(s_kept, p_kept))
    np.testing.assert_allclose(_cell(out, 1), _cell(photo, 13))
    np.testing.assert_allclose(_cell(out, 2), _cell(photo, 7))
    np.testing.assert_allclose(_cell(out, 6), _cell(sketch, 6))   # pruned ink cell keeps the sketch
    assert np.all(_cell(out, 4) == 1.0)                            # kept but no ink -> white
    mapping = ex.patch_mapping(st, pt, G, (s_kept, p_kept))
    assert mapping[1] == 13 and mapping[2] == 7 and mapping[6] == -1
    with pytest.raises(ValueError, match="kept indices"):
        ex.patch_replacement(sketch, photo, st, pt, G)


def test_token_correspondences_topn_order_mask_positions():
    pt = _distinct_tokens(6, seed=3)
    st = torch.stack([pt[4] + 0.01 * torch.randn(16), pt[1] + 0.5 * torch.randn(16), pt[2] * 2])
    m = ex.token_correspondences(st, pt, top_n=2)
    assert [(i, j) for i, j, _ in m] == [(2, 2), (0, 4)]
    assert m[0][2] >= m[1][2]
    # positions map rows to grid cells; mask excludes sketch position 12 (row 2)
    mask = np.ones(16, dtype=bool)
    mask[12] = False
    m = ex.token_correspondences(st, pt, top_n=5, sketch_positions=[3, 7, 12],
                                 photo_positions=[0, 1, 2, 5, 9, 15], sketch_mask=mask)
    assert [m_[0] for m_ in m] == [3, 7] and m[0][1] == 9
    with pytest.raises(ValueError):
        ex.token_correspondences(st, pt[:, :8])


def test_ink_mask_and_display_image():
    sketch = _sketch_with_ink([3, 4])
    assert np.flatnonzero(ex.ink_mask(sketch, G)).tolist() == [3, 4]
    t = torch.as_tensor(sketch).permute(2, 0, 1) * 2 - 1  # normalised (3, H, W) in [-1, 1]
    np.testing.assert_allclose(ex.to_display_image(t), sketch, atol=1e-6)
    with pytest.raises(ValueError, match="divisible"):
        ex.ink_mask(np.ones((30, 30, 3)), G)


def test_figures_draw():
    img = _photo_cells()
    t = _distinct_tokens(G * G)
    fig = ex.correspondence_figure(img, img, ex.token_correspondences(t, t, 5), G, title="x")
    assert len(fig.axes[0].lines) == 10  # a line and a marker pair per match
    plt.close(fig)
    fig = ex.attention_grid_figure(img, torch.rand(2, 3, G * G + 1), G)
    assert len(fig.axes) == 2 * (3 + 2) + 1  # + one colorbar for every heat map (min-max per map)
    assert "min-max" in fig.axes[-1].get_ylabel()
    plt.close(fig)
    fig = ex.patch_replacement_figure([("correct", img, img, img)])
    assert len(fig.axes) == 3
    plt.close(fig)
