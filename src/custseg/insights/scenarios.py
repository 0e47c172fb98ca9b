"""What-if scenarios on cost to serve (``gold.service_scenarios``), from the profile sums.

A scenario names its segments by name or by a selector, so one config works for every run
(segment names come from the data): ``all``, ``costly`` (highest support cost per
customer), ``loss_making`` (negative mean profit), ``top_value``, ``lowest_value``. The
figures are linear in the profile pass's sums, so each carries the same bootstrap interval
as the profiles; the assumptions are written beside them as JSON.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import pandas as pd

from custseg.config import ScenarioConfig
from custseg.insights.bootstrap import REPLICATE_COL, WEIGHT_COL, Statistic, summarise
from custseg.insights.profiles import ALL, SEGMENT

log = logging.getLogger(__name__)


def select_segments(profiles: pd.DataFrame, selectors: Sequence[str]) -> list[str]:
    """Business segment names chosen by names or selectors (unknown names are warned)."""
    business = profiles[~profiles["is_outlier"].astype(bool) & (profiles[SEGMENT] != ALL)]
    chosen: list[str] = []
    for sel in selectors:
        if sel == "all":
            picked = list(business[SEGMENT])
        elif sel == "costly":
            picked = [business.loc[business["support_cost_mean"].idxmax(), SEGMENT]]
        elif sel == "loss_making":
            picked = list(business.loc[business["profit_mean"] < 0, SEGMENT])
        elif sel == "top_value":
            picked = [business.loc[business["profit_mean"].idxmax(), SEGMENT]]
        elif sel == "lowest_value":
            picked = [business.loc[business["profit_mean"].idxmin(), SEGMENT]]
        elif sel in set(business[SEGMENT]):
            picked = [sel]
        else:
            log.warning("insights: scenario segment %r is neither a segment of this run nor a selector", sel)
            picked = []
        chosen.extend(p for p in picked if p not in chosen)
    return chosen


def _scenario_statistics(sc: ScenarioConfig) -> dict[str, Statistic]:
    if sc.kind == "support_shift":
        cost_from, minutes_from = f"support_cost_{sc.from_channel}", f"support_minutes_{sc.from_channel}"
        cost_to, minutes_to = f"tot_support_cost_{sc.to_channel}", f"tot_support_minutes_{sc.to_channel}"

        def delta_cost(f: pd.DataFrame) -> pd.Series:
            rate = f[cost_to] / f[minutes_to].where(f[minutes_to] > 0)
            return (sc.share * (f[minutes_from] * rate - f[cost_from])).astype(float)

    else:

        def delta_cost(f: pd.DataFrame) -> pd.Series:
            return (-sc.retention_loss * f["cost_to_serve"]).astype(float)

    def delta_profit(f: pd.DataFrame) -> pd.Series:
        if sc.kind == "support_shift":
            return -delta_cost(f)
        return ((1 - sc.retention_loss) * (f["profit"] + f["discount"]) - f["profit"]).astype(float)

    return {
        "cost_to_serve_before": lambda f: f["cost_to_serve"].astype(float),
        "delta_cost_to_serve": delta_cost,
        "cost_to_serve_after": lambda f: (f["cost_to_serve"] + delta_cost(f)).astype(float),
        "profit_before": lambda f: f["profit"].astype(float),
        "delta_profit": delta_profit,
        "profit_after": lambda f: (f["profit"] + delta_profit(f)).astype(float),
    }


def service_scenarios(
    sums: pd.DataFrame, profiles: pd.DataFrame, scenarios: Sequence[ScenarioConfig], *, level: float
) -> pd.DataFrame:
    """gold.service_scenarios: per scenario and chosen segment (and their total), cost to
    serve and profit before and after, the changes with intervals, the assumptions."""
    frames = []
    for sc in scenarios:
        needed = (
            [f"support_cost_{sc.from_channel}", f"tot_support_minutes_{sc.to_channel}"]
            if sc.kind == "support_shift"
            else []
        )
        absent = [c for c in needed if c not in sums.columns]
        if absent:
            raise ValueError(
                f"insights.scenarios[{sc.name}]: support channel(s) "
                f"{sorted({c.split('_')[-1] for c in absent})} have no support contacts in the window"
            )
        segments = select_segments(profiles, sc.segments)
        if not segments:
            continue
        chosen = sums[sums[SEGMENT].isin(segments)]
        total = chosen.groupby(REPLICATE_COL, as_index=False).sum(numeric_only=True)
        # the all-customers sums are the same in every row of a replicate: not summed
        tot_cols = [c for c in sums.columns if c.startswith("tot_")]
        total = total.drop(columns=tot_cols).merge(
            sums[sums[SEGMENT] == ALL][[REPLICATE_COL, *tot_cols]], on=REPLICATE_COL
        )
        total[SEGMENT] = "(chosen segments)"
        total["is_outlier"] = False
        both = pd.concat([chosen, total[chosen.columns]], ignore_index=True)
        table = summarise(both, [SEGMENT], _scenario_statistics(sc), level=level)
        point = both[both[REPLICATE_COL] == 0].set_index(SEGMENT)
        table.insert(0, "scenario", sc.name)
        table.insert(1, "kind", sc.kind)
        table.insert(3, "customers", table[SEGMENT].map(point[WEIGHT_COL]).round().astype("int64"))
        table["assumptions"] = json.dumps(sc.model_dump(mode="json"), sort_keys=True)
        frames.append(table)
    if not frames:
        return pd.DataFrame(columns=["scenario", "kind", SEGMENT, "customers", "assumptions"])
    return pd.concat(frames, ignore_index=True)
