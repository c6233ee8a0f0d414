"""Closing statements of the notebooks, computed from their own numbers (never a fixed sentence)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = ["ratio_to_chance", "zse_verdict"]


def ratio_to_chance(value: float, chance: float) -> str:
    """``"0.31 (1.3x the measured chance 0.24)"``, or ``"at chance"`` wording within 5 %."""
    if chance <= 0:
        return f"{value:.3f}"
    r = value / chance
    if abs(r - 1) < 0.05:
        return f"{value:.3f} (at the measured chance {chance:.3f})"
    return f"{value:.3f} ({r:.2f}x the measured chance {chance:.3f})"


def _mean_tail(rows: Sequence[Mapping[str, Any]], key: str, tail: int) -> float | None:
    vals = [float(r[key]) for r in rows if r.get(key) is not None][-tail:]
    return sum(vals) / len(vals) if vals else None


def zse_verdict(zs: Mapping[str, Any], chance: Mapping[str, float], metric: str, tail: int = 50) -> list[str]:
    """Markdown bullets on a ZSE-SBIR run (``zse.run_zero_shot`` output): each mode against the
    measured chance, RN vs ret (the paper's claim), the validation trend, and whether the relation
    network separates positive from negative pairs at the end of training."""
    out = []
    metrics = zs["metrics"]
    for mode, row in metrics.items():
        if metric in row:
            out.append(f"- `{mode}` {metric}: {ratio_to_chance(float(row[metric]), float(chance[metric]))}.")
    if "rn" in metrics and "ret" in metrics:
        d = float(metrics["rn"][metric]) - float(metrics["ret"][metric])
        out.append(f"- RN vs ret: {d:+.3f} {metric}; the paper's claim (RN >= ret) "
                   f"{'holds' if d >= 0 else 'does not hold'} here.")
    val = [r for r in zs.get("val") or [] if any(k.startswith("val_") for k in r)]
    if len(val) >= 2:
        key = next(k for k in val[0] if k.startswith("val_"))
        first, last = float(val[0][key]), float(val[-1][key])
        best = max(range(len(val)), key=lambda i: float(val[i][key]))
        trend = "fell" if last < first else "rose"
        out.append(f"- Validation {key[4:]} (held-out seen classes) {trend} from {first:.3f} to {last:.3f}; "
                   f"the kept weights are from validation {best + 1} of {len(val)} ({float(val[best][key]):.3f}).")
    pos, neg = _mean_tail(zs.get("history") or [], "score_pos", tail), _mean_tail(zs.get("history") or [], "score_neg", tail)
    if pos is not None and neg is not None:
        sep = "separates" if pos - neg > 0.05 else "does not yet separate"
        out.append(f"- Relation scores over the last {tail} steps: positives {pos:.3f}, negatives {neg:.3f}; "
                   f"the RN {sep} matching from non-matching pairs (targets 0.99 / 0.01).")
    return out
