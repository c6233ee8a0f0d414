"""Embedding cache: each image embedded once per model fingerprint, reused, invalidated when it should be."""
from __future__ import annotations

import os
import shutil
from dataclasses import replace

import pytest
import torch
from torch import nn

from xmodal_lib.data import open_dataset
from xmodal_lib.data.transforms import ImageLoader
from xmodal_lib.retrieval.embed_cache import (
    EmbeddingCache,
    embed_images,
    embed_records,
    model_fingerprint,
    resolve_precision,
)


class Counting(nn.Module):
    """A tiny encoder that counts the images it embeds."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 8))
        self.seen = 0

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += x.shape[0]
        return self.net(x)


@pytest.fixture()
def records(tmp_path):
    """Six synthetic photos copied to tmp_path (so the test may touch them)."""
    src = open_dataset("synthetic_fg").photos[:6]
    out = []
    for r in src:
        dst = tmp_path / "img" / r.path.name
        dst.parent.mkdir(exist_ok=True)
        shutil.copy(r.path, dst)
        out.append(replace(r, path=dst))
    return out


def test_embeds_once_and_reuses(records, tmp_path):
    m, loader = Counting().eval(), ImageLoader(32)
    fp = model_fingerprint(m)
    kw = dict(name="test/photo", fingerprint=fp, root=tmp_path / "cache", batch_size=4)
    e1 = embed_records(records, loader, m.encode, **kw)
    assert m.seen == 6 and e1.shape == (6, 8) and e1.dtype == torch.float32
    with torch.no_grad():
        direct = m.net(torch.stack([loader.load(r) for r in records]))
    torch.testing.assert_close(e1, direct, atol=1e-6, rtol=1e-6)
    e2 = embed_records(records[::-1], loader, m.encode, **kw)  # all cached, any order
    assert m.seen == 6
    torch.testing.assert_close(e2, e1.flip(0))
    files = list((tmp_path / "cache").glob("*.safetensors"))
    assert len(files) == 1 and not list((tmp_path / "cache").glob("*.tmp"))
    # a modified file is embedded again, the others are not
    st = records[2].path.stat()
    os.utime(records[2].path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    embed_records(records, loader, m.encode, **kw)
    assert m.seen == 7


def test_other_weights_or_loader_do_not_reuse(records, tmp_path):
    root = tmp_path / "cache"
    a, b = Counting(0).eval(), Counting(1).eval()
    assert model_fingerprint(a) != model_fingerprint(b)
    ea = embed_records(records, ImageLoader(32), a.encode, name="t", fingerprint=model_fingerprint(a), root=root)
    eb = embed_records(records, ImageLoader(32), b.encode, name="t", fingerprint=model_fingerprint(b), root=root)
    assert b.seen == 6 and not torch.allclose(ea, eb)
    embed_records(records, ImageLoader(40), a.encode, name="t", fingerprint=model_fingerprint(a), root=root)
    assert a.seen == 12  # another loader (image size) is another cache
    assert len(list(root.glob("*.safetensors"))) == 3


def test_embed_images_and_bad_cache_file(tmp_path):
    m = Counting().eval()
    x = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    fp = model_fingerprint(m)
    e1 = embed_images(x, m.encode, name="imgs", fingerprint=fp, root=tmp_path, batch_size=2)
    e2 = embed_images(torch.cat([x, x[:1] + 1]), m.encode, name="imgs", fingerprint=fp, root=tmp_path)
    assert m.seen == 6  # 5 once, then only the new image
    torch.testing.assert_close(e2[:5], e1)
    f = next(tmp_path.glob("imgs-*.safetensors"))
    f.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a valid embedding cache"):
        embed_images(x, m.encode, name="imgs", fingerprint=fp, root=tmp_path)
    with pytest.raises(ValueError, match="keys"):
        EmbeddingCache("z", "0" * 40, tmp_path).update(["a"], torch.zeros(2, 3))


def test_fingerprint_covers_buffers_and_scalars():
    bn = nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2))  # 0-dim int64 buffer num_batches_tracked
    f0 = model_fingerprint(bn)
    bn.train()(torch.rand(2, 3, 4, 4))  # updates running stats (buffers), not parameters
    assert model_fingerprint(bn) != f0
    assert model_fingerprint(bn, extra="fp32") != model_fingerprint(bn, extra="bf16")


def test_precision_rules():
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", torch.device("cpu"))
