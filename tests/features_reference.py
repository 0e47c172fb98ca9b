"""An independent pandas computation of the customer features straight from the raw
event rows (no customer-day table, no snapshot explode, one groupby per window), for the
features tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import numpy as np
import pandas as pd

KEY = ["source_system", "source_id"]


def _mapped(events: pd.DataFrame | None, imap: pd.DataFrame, day_col: str, d: date) -> pd.DataFrame | None:
    """Events joined to customers, with their calendar day, before ``d``."""
    if events is None:
        return None
    out = events.merge(imap[[*KEY, "customer_id"]].drop_duplicates(KEY), on=KEY, how="inner")
    out["day"] = pd.to_datetime(out[day_col]).dt.date
    return out[out["day"] < d].copy()


def _mode(values: pd.Series) -> object:
    counts = values.dropna().value_counts()
    if counts.empty:
        return None
    return sorted(counts[counts == counts.max()].index)[0]


def _purchases(t: pd.DataFrame, d: date) -> pd.DataFrame:
    orders = t[t["amount"] >= 0]  # every non-refund row is an order, free ones too
    rows = {}
    for cid, o in orders.groupby("customer_id"):
        pdays = sorted(set(o["day"]))
        gaps = np.diff([x.toordinal() for x in pdays]).astype(float)
        rows[cid] = {
            "first_purchase_date": pdays[0],
            "last_purchase_date": pdays[-1],
            "recency_days": (d - pdays[-1]).days,
            "tenure_days": (d - pdays[0]).days,
            "orders_lifetime": len(o),
            "purchase_days": len(pdays),
            "avg_order_value": o["amount"].sum() / len(o),
            "mean_gap_days": gaps.mean() if len(gaps) else None,
            "std_gap_days": gaps.std(ddof=1) if len(gaps) > 1 else None,
            "is_repeat_buyer": len(pdays) >= 2,
            "dominant_channel": _mode(o["channel"]),
            "dominant_product_category": _mode(o["product_category"]),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def reference_features(
    d: date,
    imap: pd.DataFrame,
    tx: pd.DataFrame,
    support: pd.DataFrame | None = None,
    usage: pd.DataFrame | None = None,
    touches: pd.DataFrame | None = None,
    attributes: pd.DataFrame | None = None,
    *,
    windows: Sequence[int] = (30, 90, 180, 365, 1095),
    trend_days: int = 90,
    categorical: Sequence[str] = (),
    numeric: Sequence[str] = (),
    priority: Sequence[str] = ("web", "app", "call_centre"),
) -> pd.DataFrame:
    """Feature rows at snapshot ``d`` (events with day < d), one per customer with an event."""
    t = _mapped(tx, imap, "ts", d)
    assert t is not None
    s = _mapped(support, imap, "ts", d)
    if s is not None:
        s["resolved"] = s["resolved"].astype("boolean").fillna(False).astype(int)
    u = _mapped(usage, imap, "date", d)
    m = _mapped(touches, imap, "ts", d)
    present = [x for x in (t, s, u, m) if x is not None]
    first = pd.concat([x[["customer_id", "day"]] for x in present]).groupby("customer_id")["day"].min()
    out = pd.DataFrame({"first_event_date": first})
    out["days_since_first_event"] = [(d - x).days for x in first]
    start = d - timedelta(days=windows[-1])
    own = pd.concat([x[["customer_id", "day"]] for x in (t, s, u) if x is not None])
    last = own[own["day"] >= start].groupby("customer_id")["day"].max()
    out["last_active_date"] = last.reindex(out.index)
    out["days_since_last_active"] = [None if pd.isna(x) else (d - x).days for x in out["last_active_date"]]
    out["active_span_days"] = [
        None if pd.isna(x) else (x - max(f, start)).days + 1
        for f, x in zip(out["first_event_date"], out["last_active_date"], strict=True)
    ]
    out = out.join(_purchases(t, d))
    out["orders_lifetime"] = out["orders_lifetime"].fillna(0).astype(int)
    out["purchase_days"] = out["purchase_days"].fillna(0).astype(int)
    out["is_repeat_buyer"] = out["is_repeat_buyer"].astype("boolean").fillna(False).astype(bool)
    t = t.assign(
        order=(t["amount"] >= 0).astype(int),
        gross=np.where(t["amount"] >= 0, t["amount"] + t["discount"].fillna(0), 0.0),
        disc=np.where(t["amount"] >= 0, t["discount"].fillna(0), 0.0),
        cogs=t["cost"].fillna(0),
    )
    for w in windows:
        lo = d - timedelta(days=w)
        sfx = f"_{w}d"
        cols: dict[str, pd.Series] = {}
        g = t[t["day"] >= lo].groupby("customer_id")
        cols["orders" + sfx] = g["order"].sum()
        cols["monetary" + sfx] = g["amount"].sum()
        cols["gross_sales" + sfx] = g["gross"].sum()
        cols["discount" + sfx] = g["disc"].sum()
        cols["cogs" + sfx] = g["cogs"].sum()
        if s is not None:
            g = s[s["day"] >= lo].groupby("customer_id")
            cols["support_contacts" + sfx] = g.size()
            cols["support_minutes" + sfx] = g["handle_minutes"].sum()
            cols["support_cost" + sfx] = g["cost"].sum()
            cols["support_resolved" + sfx] = g["resolved"].sum()
        if u is not None:
            g = u[u["day"] >= lo].groupby("customer_id")
            cols["active_days" + sfx] = g["day"].nunique()
            cols["sessions" + sfx] = g["sessions"].sum()
            cols["events" + sfx] = g["events"].sum()
            cols["active_minutes" + sfx] = g["active_minutes"].sum()
            cols["max_daily_features_used" + sfx] = g["features_used"].max()
        if m is not None:
            g = m[m["day"] >= lo].groupby("customer_id")
            cols["touches" + sfx] = g.size()
            cols["touch_cost" + sfx] = g["cost"].sum()
        block = pd.DataFrame(cols).reindex(out.index).fillna(0)
        block["gross_margin" + sfx] = block["monetary" + sfx] - block["cogs" + sfx]
        gross = block["gross_sales" + sfx]
        block["discount_share" + sfx] = np.where(
            gross > 0, block["discount" + sfx] / gross.where(gross > 0, 1), 0.0
        )
        block["cost_to_serve" + sfx] = sum(
            (block[c + sfx] for c in ("support_cost", "touch_cost") if c + sfx in block),
            pd.Series(0.0, block.index),
        )
        block["profit" + sfx] = block["gross_margin" + sfx] - block["cost_to_serve" + sfx]
        out = out.join(block)
    if s is not None:
        n = out[f"support_contacts_{windows[-1]}d"]
        out["support_resolution_rate"] = (out[f"support_resolved_{windows[-1]}d"] / n).where(n > 0)
    if u is not None:
        ago = u["day"].map(lambda x: (d - x).days)
        recent = u[ago <= trend_days].groupby("customer_id")["sessions"].sum().reindex(out.index).fillna(0)
        before = u[(ago > trend_days) & (ago <= 2 * trend_days)].groupby("customer_id")["sessions"].sum()
        out["sessions_trend"] = np.log1p(recent) - np.log1p(before.reindex(out.index).fillna(0))
    out.index.name = "customer_id"
    out = out.reset_index()
    if attributes is not None:
        attrs = _attributes(attributes, imap, [*categorical, *numeric], priority, numeric)
        out = out.merge(attrs, on="customer_id", how="left")
    return out


def _attributes(
    attributes: pd.DataFrame,
    imap: pd.DataFrame,
    names: Sequence[str],
    priority: Sequence[str],
    numeric: Sequence[str],
) -> pd.DataFrame:
    """Per attribute: most frequent value, ties to the earliest system, then the smallest."""
    a = attributes.merge(imap[[*KEY, "customer_id"]].drop_duplicates(KEY), on=KEY, how="inner")
    a["p"] = a["source_system"].map({s: i for i, s in enumerate(priority)}).fillna(len(priority))
    frame = pd.DataFrame(index=pd.Index(sorted(a["customer_id"].unique()), name="customer_id"))
    for name in names:
        vals = a[["customer_id", name, "p"]].dropna(subset=[name])
        text = vals[name].map(repr if name in numeric else str)
        stats = (
            vals.assign(v=text)
            .groupby(["customer_id", "v"])
            .agg(n=("p", "size"), p=("p", "min"))
            .reset_index()
        )
        best = stats.sort_values(["customer_id", "n", "p", "v"], ascending=[True, False, True, True])
        winner = best.drop_duplicates("customer_id").set_index("customer_id")["v"]
        frame[name] = winner.astype(float) if name in numeric else winner
    return frame.reset_index()
