"""Recommendations from rules in config, each citing the numbers it rests on.

A rule holds for a subject (a business segment, or the whole business for a global
rule) when every condition holds: ``max`` / ``min`` pick the segment with the highest /
lowest value; ``<``, ``>``, ... compare with a number or with the all-customers row.
Every row of ``gold.recommendations`` carries the first condition's metric, value,
interval, operator and threshold, and ``evidence`` spells out every condition with its
numbers, so no recommendation is asserted without its figure.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from custseg.config import ConditionConfig, RuleConfig
from custseg.insights.profiles import ALL, SEGMENT

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
COLUMNS = [
    "rule",
    "action",
    "scope",
    "subject",
    "metric",
    "value",
    "value_lo",
    "value_hi",
    "op",
    "threshold",
    "evidence",
]


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{x:,.3f}" if abs(x) < 10 else f"{x:,.0f}"


def _holds(cond: ConditionConfig, value: float, threshold: float, best: float) -> bool:
    if not math.isfinite(value):
        return False
    if cond.op in ("max", "min"):
        return value == best
    return _OPS[cond.op](value, threshold)


def recommend(
    profiles: pd.DataFrame,
    global_metrics: Mapping[str, tuple[float, float, float]],
    rules: Sequence[RuleConfig],
) -> pd.DataFrame:
    """gold.recommendations from gold.segment_profiles and the global metrics
    (name -> (value, lo, hi)); raises ValueError naming a metric that does not exist."""
    business = profiles[~profiles["is_outlier"].astype(bool) & (profiles[SEGMENT] != ALL)]
    everyone = profiles[profiles[SEGMENT] == ALL]
    rows = []
    for rule in rules:
        if rule.scope == "segment":
            subjects = list(business[SEGMENT])
            for cond in rule.conditions:
                if cond.metric not in profiles.columns:
                    metrics = sorted(c for c in profiles.columns if not c.endswith(("_lo", "_hi")))
                    raise ValueError(
                        f"insights.recommendations[{rule.name}]: metric {cond.metric!r} is not a column of "
                        f"gold.segment_profiles; columns: {metrics}"
                    )
        else:
            subjects = [ALL]
            for cond in rule.conditions:
                if cond.metric not in global_metrics:
                    raise ValueError(
                        f"insights.recommendations[{rule.name}]: metric {cond.metric!r} is not a global "
                        f"metric; global metrics: {sorted(global_metrics)}"
                    )
        for subject in subjects:
            cited = []
            for cond in rule.conditions:
                if rule.scope == "segment":
                    row = business[business[SEGMENT] == subject].iloc[0]
                    value = float(row[cond.metric])
                    lo = float(row.get(f"{cond.metric}_lo", math.nan))
                    hi = float(row.get(f"{cond.metric}_hi", math.nan))
                    column = business[cond.metric].astype(float)
                    best = column.max() if cond.op == "max" else column.min()
                else:
                    value, lo, hi = global_metrics[cond.metric]
                    best = value
                if cond.threshold == "all_customers":
                    threshold = float(everyone[cond.metric].iloc[0]) if len(everyone) else math.nan
                    said = f"all customers' {_fmt(threshold)}"
                elif cond.threshold is None:
                    threshold = float(best)
                    said = f"the {cond.op} over segments"
                else:
                    threshold = float(cond.threshold)
                    said = _fmt(threshold)
                if not _holds(cond, value, threshold, float(best)):
                    break
                cited.append(
                    (
                        cond,
                        value,
                        lo,
                        hi,
                        threshold,
                        f"{cond.metric} = {_fmt(value)} "
                        f"(95 % interval {_fmt(lo)} to {_fmt(hi)}) {cond.op} {said}",
                    )
                )
            else:
                cond, value, lo, hi, threshold, _ = cited[0]
                rows.append(
                    {
                        "rule": rule.name,
                        "action": rule.action,
                        "scope": rule.scope,
                        "subject": subject,
                        "metric": cond.metric,
                        "value": value,
                        "value_lo": lo,
                        "value_hi": hi,
                        "op": cond.op,
                        "threshold": threshold,
                        "evidence": "; ".join(c[-1] for c in cited),
                    }
                )
    return pd.DataFrame(rows, columns=COLUMNS)
