"""The papers' reported numbers, as data: never measured here, always marked "reported".

Sources (see ``methods_spec.md``): XModalViT README table (§1.9, fine-grained acc@K) and
ZSE-SBIR paper Table 1 / project page (§3.10, category-level zero-shot). CrossATNet's numbers
could not be obtained (no code, paper PDF not reachable, §2.1), so it has no entries: we do not
quote numbers from memory.

Each entry names the *setting* (dataset + split + protocol) and the *metric* in the metric
engine's naming (``xmodal_lib.retrieval.metrics``), so a table can place a reported number beside
ours only where both match. Values are stored in the engine's units (fractions, not percent).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

#: Settings reported numbers refer to. Our runs name their setting with the same keys.
SETTINGS: dict[str, str] = {
    "sketchy_ext_25": "Sketchy-Extended, 25 unseen classes (SAKE split, ZSE-SBIR zeroshot1); full test gallery",
    "sketchy_ext_21": "Sketchy-Extended, 21 unseen classes (Yelamarthi split, ZSE-SBIR zeroshot0); full test gallery",
    "tuberlin_ext_30": "TU-Berlin-Extended, 30 unseen classes; full test gallery",
    "quickdraw_ext_30": "QuickDraw-Extended, 30 unseen classes; full test gallery",
    "shoe_v2": "QMUL Shoe-V2 fine-grained test set, every sketch vs all test photos",
    "chair_v2": "QMUL Chair-V2 fine-grained test set, every sketch vs all test photos",
    "sketchy_fg": "Sketchy fine-grained (instance-level) test split of XModalViT",
}

#: How each reported metric was computed, in the engine's words.
CONVENTIONS: dict[str, str] = {
    "map_all_voc": "mAP@all, VOC-interpolated AP (SAKE / ZSE-SBIR utils/ap.py)",
    "map@200_voc": "mAP@200, VOC-interpolated inside the top 200, divided by min(200, R) (SAKE strict)",
    "p@100_minr": "Prec@100 over the top min(100, R) (ZSE-SBIR); equals p@100 when every class has >= 100 photos",
    "p@200_minr": "Prec@200 over the top min(200, R) (ZSE-SBIR); equals p@200 when every class has >= 200 photos",
    "acc@1": "FG acc@1: share of sketches whose photo ranks first (README; the released test.py differs, §1.8)",
    "acc@10": "FG acc@10: share of sketches whose photo is in the top 10 (README; see §1.8)",
}


@dataclass(frozen=True)
class Reported:
    """One number printed by a paper (or its README), with where it came from."""

    paper: str        # "ZSE-SBIR" | "XModalViT"
    method: str       # row name as printed, e.g. "Ours-Ret", "SAKE"
    setting: str      # key of SETTINGS
    metric: str       # engine metric name, key of CONVENTIONS
    value: float      # engine units (fraction)
    source: str       # where it was read
    ours: str = ""    # our method key this row is the published counterpart of ("" for baselines)

    @property
    def label(self) -> str:
        return f"{self.method} [{self.paper}] (reported)"


_ZSE_SRC = "ZSE-SBIR paper Table 1 / project page (methods_spec.md §3.10)"
_XM_SRC = "XModalViT README (methods_spec.md §1.9)"

# (method, ours, TU mAP, TU P@100, Sk mAP, Sk P@100, Sk21 mAP@200, Sk21 P@200, QD mAP, QD P@200); None = "–"
_ZSE_TABLE = [
    ("ZSIH", "", 0.220, 0.291, 0.254, 0.340, None, None, None, None),
    ("CC-DG", "", 0.247, 0.392, 0.311, 0.468, None, None, None, None),
    ("DOODLE", "", 0.109, None, 0.369, None, None, None, 0.075, 0.068),
    ("SEM-PCYC", "", 0.297, 0.426, 0.349, 0.463, None, None, None, None),
    ("SAKE", "", 0.475, 0.599, 0.547, 0.692, 0.497, 0.598, 0.130, 0.179),
    ("SketchGCN", "", 0.324, 0.505, 0.382, 0.538, None, None, None, None),
    ("StyleGuide", "", 0.254, 0.355, 0.376, 0.484, 0.358, 0.400, None, None),
    ("PDFD", "", 0.483, 0.600, 0.661, 0.781, None, None, None, None),
    ("ViT-Vis", "", 0.360, 0.503, 0.410, 0.569, 0.403, 0.512, 0.101, 0.113),
    ("ViT-Ret", "", 0.438, 0.578, 0.483, 0.637, 0.416, 0.522, 0.115, 0.127),
    ("DSN", "", 0.484, 0.591, 0.583, 0.704, None, None, None, None),
    ("BDA-SketRet", "", 0.375, 0.504, 0.437, 0.514, 0.556, 0.458, 0.154, 0.355),
    ("SBTKNet", "", 0.480, 0.608, 0.553, 0.698, 0.502, 0.596, None, None),
    ("Sketch3T", "", 0.507, None, 0.575, None, None, None, None, None),
    ("TVT", "", 0.484, 0.662, 0.648, 0.796, 0.531, 0.618, 0.149, 0.293),
    ("Ours-RN", "zse_rn", 0.542, 0.657, 0.698, 0.797, 0.525, 0.624, 0.145, 0.216),
    ("Ours-Ret", "zse_ret", 0.569, 0.637, 0.736, 0.808, 0.504, 0.602, 0.142, 0.202),
]
_ZSE_COLS = [("tuberlin_ext_30", "map_all_voc"), ("tuberlin_ext_30", "p@100_minr"),
             ("sketchy_ext_25", "map_all_voc"), ("sketchy_ext_25", "p@100_minr"),
             ("sketchy_ext_21", "map@200_voc"), ("sketchy_ext_21", "p@200_minr"),
             ("quickdraw_ext_30", "map_all_voc"), ("quickdraw_ext_30", "p@200_minr")]

# (method, ours, setting, acc@1 %, acc@10 %)
_XM_TABLE = [
    ("Yang et al. ICCV'21", "", "shoe_v2", 32.33, 79.63), ("Yang et al. ICCV'21", "", "chair_v2", 52.89, 94.88),
    ("Sain et al. CVPR'21", "", "shoe_v2", 36.47, 81.83), ("Sain et al. CVPR'21", "", "chair_v2", 62.86, 91.14),
    ("Bhunia et al. CVPR'21", "", "shoe_v2", 39.10, 87.50), ("Bhunia et al. CVPR'21", "", "chair_v2", 62.20, 90.80),
    ("Chowdhury et al. CVPR'22", "", "shoe_v2", 39.90, 82.90),
    ("Bhunia et al. CVPR'22", "", "shoe_v2", 43.70, None), ("Bhunia et al. CVPR'22", "", "chair_v2", 64.80, None),
    ("XModalViT", "xmodalvit", "shoe_v2", 45.05, 90.23), ("XModalViT", "xmodalvit", "chair_v2", 63.48, 95.02),
    ("Human (Sangkloy et al. '16)", "", "sketchy_fg", 54.27, None),
    ("Pang et al. BMVC'17", "", "sketchy_fg", 50.14, None),
    ("Wang et al. PR'20 (S+I)", "", "sketchy_fg", 40.16, 92.00),
    ("Wang et al. PR'20 (S+I+D)", "", "sketchy_fg", 46.20, 96.49),
    ("XModalViT", "xmodalvit", "sketchy_fg", 56.15, 96.86),
]


def _build() -> list[Reported]:
    rows: list[Reported] = []
    for method, ours, *vals in _ZSE_TABLE:
        for (setting, metric), v in zip(_ZSE_COLS, vals):
            if v is not None:
                rows.append(Reported("ZSE-SBIR", method, setting, metric, float(v), _ZSE_SRC, ours))
    for method, ours, setting, a1, a10 in _XM_TABLE:
        for metric, v in (("acc@1", a1), ("acc@10", a10)):
            if v is not None:
                rows.append(Reported("XModalViT", method, setting, metric, round(v / 100.0, 6), _XM_SRC, ours))
    return rows


REPORTED: tuple[Reported, ...] = tuple(_build())

#: CrossATNet: no reported number is available to us (methods_spec.md §2.1).
MISSING = {"crossatnet": "CrossATNet's numbers are not available (no code; paper PDF unreachable): none are shown."}


def reported(setting: str | None = None, metric: str | None = None, method: str | None = None,
             ours: str | None = None) -> list[Reported]:
    """Reported entries filtered by setting / metric / printed method name / our method key."""
    if setting is not None and setting not in SETTINGS:
        raise ValueError(f"setting: expected one of {sorted(SETTINGS)}, got {setting!r}")
    return [r for r in REPORTED
            if (setting is None or r.setting == setting) and (metric is None or r.metric == metric)
            and (method is None or r.method == method) and (ours is None or r.ours == ours)]


def reported_for(ours: str, setting: str | None, metric: str) -> Reported | None:
    """The published counterpart of our method ``ours`` in exactly this setting and metric, if any."""
    if setting is None or setting not in SETTINGS:
        return None
    hits = [r for r in REPORTED if r.ours == ours and r.setting == setting and r.metric == metric]
    return hits[0] if hits else None


def as_records(rows: list[Reported] | tuple[Reported, ...] = REPORTED) -> list[dict]:
    """Plain dicts (for JSON / pandas), each with ``"kind": "reported"``."""
    return [{**asdict(r), "kind": "reported", "convention": CONVENTIONS[r.metric]} for r in rows]


def comparison(ours: dict[str, dict[str, float]], setting: str | None,
               queries_x_gallery: str = "") -> list[dict]:
    """One row per (our method, metric) that has a published counterpart in exactly ``setting``:
    ours, reported, difference (ours - reported), the setting (split) and the metric convention.

    ``ours`` = ``{method_key: {metric: value}}`` with :mod:`xmodal_lib.methods.reported` method keys
    (``zse_ret``, ``zse_rn``, ``xmodalvit``); ``queries_x_gallery`` (e.g. ``"50 x 50"``) goes in
    every row so a run on a subset is visible as one. Empty when ``setting`` is None.
    """
    if setting is None:
        return []
    if setting not in SETTINGS:
        raise ValueError(f"setting: expected None or one of {sorted(SETTINGS)}, got {setting!r}")
    rows = []
    for method, vals in ours.items():
        for metric, value in vals.items():
            r = reported_for(method, setting, metric) if isinstance(value, (int, float)) else None
            if r is None or value is None:
                continue
            rows.append({"method": method, "reported_as": f"{r.method} [{r.paper}]", "metric": metric,
                         "ours": float(value), "reported": r.value, "difference": float(value) - r.value,
                         "setting": SETTINGS[setting], "ours_queries_x_gallery": queries_x_gallery,
                         "convention": CONVENTIONS[metric], "source": r.source})
    return rows


def comparison_markdown(rows: list[dict]) -> str:
    """:func:`comparison` rows as a Markdown table (every row names its setting and convention)."""
    if not rows:
        return "no published number matches these methods, metrics and setting: nothing to compare."
    head = "| ours | reported as | metric | ours | reported | ours - reported | setting (split) | our Q x G | convention |"
    out = [head, "|---" * 9 + "|"]
    for r in rows:
        out.append(f"| {r['method']} | {r['reported_as']} | `{r['metric']}` | {r['ours']:.4f} | {r['reported']:.4f} "
                   f"| {r['difference']:+.4f} | {r['setting']} | {r['ours_queries_x_gallery']} | {r['convention']} |")
    return "\n".join(out)
