"""Redraw the reference figures of a cpu-profile run from its ``results.json`` (no retraining).

The committed ``figures/`` set comes from real-data runs of ``xmodal reproduce --profile cpu``.
Figures whose plotting code improved after the run are redrawn here from the run's own numbers with
the library's plotting functions, and one summary table of notebooks 03 and 04 is added:

* ``03_hamming_vs_real.png`` (``viz.crossatnet_plots.plot_hash_tradeoff``), ``03_ablations.png`` and
  ``04_zse_modes.png`` (``viz.plots.bar_table``): the same calls as the notebooks;
* ``cpu_results_table.png`` (``viz.retrieval_plots.table_figure``): every zero-shot row of 03 and 04
  with the chance measured on random scores and the shuffled-label permutation p-value.

Run: ``python benchmarks/reference_figures.py --run03 RUN_DIR --run04 RUN_DIR --out figures``
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _results(run_dir: Path, stem: str) -> dict:
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise SystemExit(f"--run for {stem}: {path} not found (expected a run folder of xmodal reproduce)")
    data = json.loads(path.read_text())
    if stem not in data:
        raise SystemExit(f"{path}: no {stem} section (have {sorted(data)})")
    return data[stem]


def summary_rows(r03: dict | None, r04: dict | None, metric: str = "map_all_voc") -> dict[str, dict]:
    """``{row: {column: value}}`` of the zero-shot results of notebooks 03 and 04 (unseen classes)."""
    rows: dict[str, dict] = {}
    if r03 is not None:
        p = r03["significance"]["p"]
        for name, m in r03["ablations"].items():
            rows[f"CrossATNet {name} (03)"] = {metric: m[metric], "p@100": m["p@100"],
                                               "p (perm.)": p if name == "full" else float("nan")}
        for bits in sorted((k for k in r03["zero_shot"] if k.startswith("hash")), key=lambda k: int(k[4:])):
            m = r03["zero_shot"][bits]
            rows[f"CrossATNet {bits} Hamming (03)"] = {metric: m[metric], "p@100": m["p@100"], "p (perm.)": float("nan")}
        rows["chance, random scores (03)"] = {**r03["chance"], "p (perm.)": float("nan")}
    if r04 is not None:
        zs, sig = r04["zero_shot"], r04.get("significance", {})
        for mode, m in zs["metrics"].items():
            rows[f"ZSE-SBIR {mode} (04)"] = {metric: m[metric], "p@100": m["p@100"],
                                             "p (perm.)": sig.get(mode, {}).get("p", float("nan"))}
        ts = r04.get("token_selection")
        if ts:
            for mode, m in ts["metrics"].items():
                rows[f"ZSE-SBIR {mode}, token sel. r={ts['keep_rate']} (04)"] = {
                    metric: m[metric], "p@100": m["p@100"], "p (perm.)": float("nan")}
        rows["chance, random scores (04)"] = {**zs["chance"], "p (perm.)": float("nan")}
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run03", type=Path, default=None, help="run folder holding notebook 03's results.json")
    ap.add_argument("--run04", type=Path, default=None, help="run folder holding notebook 04's results.json")
    ap.add_argument("--out", type=Path, default=ROOT / "figures")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from xmodal_lib.viz import crossatnet_plots as cp
    from xmodal_lib.viz import retrieval_plots as rp
    from xmodal_lib.viz.plots import bar_table, save_fig, setup_style

    setup_style()
    r03 = _results(args.run03, "03_crossatnet_zero_shot") if args.run03 else None
    r04 = _results(args.run04, "04_zse_sbir") if args.run04 else None
    label = "chance (random scores, measured)"
    if r03 is not None:
        name = r03["dataset"]
        save_fig(cp.plot_hash_tradeoff(r03["zero_shot"], chance=r03["chance"], title=f"CrossATNet, unseen classes "
                                       f"of {name}: Hamming vs real-valued retrieval"), "03_hamming_vs_real", args.out)
        save_fig(bar_table(r03["ablations"], ["map_all_voc", "p@100"], chance=r03["chance"], chance_label=label,
                           title=f"CrossATNet zero-shot ablations, unseen classes of {name} (real-valued)"),
                 "03_ablations", args.out)
    if r04 is not None:
        zs = r04["zero_shot"]
        save_fig(bar_table(zs["metrics"], ["map_all_voc", "p@100"], chance=zs["chance"], chance_label=label,
                           title=f"ZSE-SBIR zero-shot, unseen classes of {r04['dataset']}"), "04_zse_modes", args.out)
    rows = summary_rows(r03, r04)
    if rows:
        name = (r03 or r04)["dataset"]
        df = pd.DataFrame.from_dict(rows, orient="index")[["map_all_voc", "p@100", "p (perm.)"]]
        fig = rp.table_figure(df, title=f"Zero-shot SBIR on real data: unseen classes of {name} (cpu profile)\n"
                                        "mAP@all (VOC-interpolated), P@100; p = shuffled-label permutation test "
                                        "(200 permutations: 0.005 is the smallest p)")
        save_fig(fig, "cpu_results_table", args.out)
    print("wrote", sorted(p.name for p in Path(args.out).glob("*.png")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
