"""The report's thirteen sections, in order. Each opens with one sentence stating its
finding with its number, then shows tables and figures drawn from ``ReportData``.

A section whose tables the run did not write says so in its finding; it is never left
out, so every report has the same headings in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from custseg.config import Config, flatten
from custseg.contract import TABLE_ORDER
from custseg.report import plots
from custseg.report.data import ReportData
from custseg.runs import redact
from custseg.stage import STAGES
from custseg.tracking import package_versions

ALL = "(all customers)"


@dataclass
class Block:
    """One piece of a section: a table (HTML escaped by pandas), a figure, a list, text."""

    kind: str  # "table" | "img" | "list" | "text"
    content: Any
    caption: str = ""


@dataclass
class Section:
    id: str
    title: str
    finding: str
    blocks: list[Block] = field(default_factory=list)


# --- formatting --------------------------------------------------------------------


def _finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def pct(x: Any, digits: int = 1) -> str:
    return f"{float(x):.{digits}%}" if _finite(x) else "n/a"


def money(x: Any, currency: str) -> str:
    return f"{currency} {float(x):,.0f}" if _finite(x) else "n/a"


def num(x: Any, digits: int = 2) -> str:
    if not _finite(x):
        return "n/a"
    value = float(x)
    return f"{value:,.0f}" if abs(value) >= 1000 or value == int(value) else f"{value:,.{digits}f}"


def interval(row: pd.Series | dict[str, Any], col: str, fmt: Callable[[Any], str]) -> str:
    """``value (lo to hi)`` when the row carries the interval, else the value."""
    value = fmt(row[col])
    lo, hi = row.get(f"{col}_lo"), row.get(f"{col}_hi")
    if _finite(lo) and _finite(hi):
        return f"{value} ({fmt(lo)} to {fmt(hi)})"
    return value


def table(frame: pd.DataFrame, caption: str = "") -> Block:
    return Block(
        "table", frame.to_html(index=False, border=0, classes="grid", na_rep="", escape=True), caption
    )


def image(b64: str, caption: str) -> Block:
    return Block("img", b64, caption)


def _business(profiles: pd.DataFrame) -> pd.DataFrame:
    keep = ~profiles["is_outlier"].astype(bool) & (profiles["segment_name"] != ALL)
    return profiles[keep].sort_values("profit_mean", ascending=False)


def _missing(title: str, sid: str, what: str) -> Section:
    return Section(sid, title, f"This run wrote no {what}, so there is nothing to show here.")


# --- the answers (section 1 and the plain-text summary) -------------------------------


@dataclass
class Answers:
    """The run's answers in words (shared by section 1 and ``summary.txt``)."""

    top_share: str | None
    valuable: str | None
    shared_traits: list[str]
    unprofitable: str | None
    cost_to_serve: str | None
    segments: list[str]
    recommendations: list[str]


def answers(data: ReportData) -> Answers:
    cur = data.cfg.run.currency
    headlines = data.table("insight_headlines")
    said = dict(zip(headlines["name"], headlines["text"], strict=True)) if headlines is not None else {}
    profiles = data.table("segment_profiles")
    valuable, traits_text, segments, unprofitable = None, [], [], None
    if profiles is not None and len(_business(profiles)):
        business = _business(profiles)
        best = business.iloc[0]
        valuable = said.get("top_segment") or (
            f"'{best['segment_name']}' earns the most profit per customer "
            f"({money(best['profit_mean'], cur)})."
        )
        segments = [
            f"{r.segment_name}: {pct(r.customer_share)} of customers, {pct(r.profit_share)} of profit, "
            f"{money(r.profit_mean, cur)} profit per customer"
            for r in business.itertuples()
        ]
        traits = data.table("segment_traits")
        if traits is not None:
            mine = traits[(traits["segment_name"] == best["segment_name"]) & traits["is_trait"].astype(bool)]
            for r in mine.sort_values("lift", ascending=False).head(4).itertuples():
                traits_text.append(
                    f"{r.attribute} = {r.value}: {pct(r.share, 0)} of them against {pct(r.share_all, 0)} "
                    f"of all customers (lift {r.lift:.1f}x)"
                )
        if "unprofitable_profit" in business:
            lost = float(business["unprofitable_profit"].sum())
            count = int(business["unprofitable_customers"].sum())
            losing = business.loc[business["profit_mean"] < 0, "segment_name"]
            if len(losing):
                unprofitable = (
                    f"{count:,} customers ({pct(count / business['customers'].sum())}) lose money "
                    f"over the window; together they cost {money(-lost, cur)} of profit. "
                    "Loss-making segments: " + ", ".join(f"'{s}'" for s in losing) + "."
                )
            else:
                unprofitable = (
                    f"{count:,} customers lose money over the window; together {money(-lost, cur)} of profit."
                )
    recommendations = []
    recs = data.table("recommendations")
    if recs is not None:
        for r in recs.itertuples():
            recommendations.append(f"{r.action} ({r.subject}): {r.evidence}")
    return Answers(
        top_share=said.get("top_share_of_profit"),
        valuable=valuable,
        shared_traits=traits_text,
        unprofitable=unprofitable,
        cost_to_serve=said.get("cost_to_serve"),
        segments=segments,
        recommendations=recommendations,
    )


def summary_text(data: ReportData, report_path: str) -> str:
    """The plain-text summary ``make demo`` prints (and ``summary.txt``)."""
    a = answers(data)
    lines = [f"custseg run {data.run_id}: what it found", ""]
    if a.segments:
        lines.append("Segments (share of customers, share of profit):")
        lines += [f"  - {s}" for s in a.segments]
        lines.append("")
    for text in (a.top_share, a.cost_to_serve, a.unprofitable):
        if text:
            lines.append(text)
    recs = a.recommendations[: data.cfg.report.top_recommendations]
    if recs:
        lines += ["", "Recommendations:"]
        lines += [f"  {i}. {r}" for i, r in enumerate(recs, start=1)]
    lines += ["", f"Report: {report_path}"]
    return "\n".join(lines) + "\n"


def section_answers(data: ReportData) -> Section:
    a = answers(data)
    title = "The answers"
    if a.top_share is None and a.valuable is None:
        return _missing(title, "answers", "insight tables (run the insights stage)")
    blocks = []
    items = [x for x in (a.valuable, a.unprofitable, a.cost_to_serve) if x]
    if items:
        blocks.append(Block("list", items, "Who is valuable, and what the unprofitable cost"))
    if a.shared_traits:
        blocks.append(Block("list", a.shared_traits, "What the most valuable segment shares"))
    recs = data.table("recommendations")
    if recs is not None and len(recs):
        shown = recs[["action", "scope", "subject", "evidence"]].rename(columns=str.capitalize)
        blocks.append(table(shown, "Recommendations, each citing its figure"))
    return Section("answers", title, a.top_share or a.valuable or "", blocks)


# --- 2. segments ----------------------------------------------------------------------


def section_segments(data: ReportData) -> Section:
    title, cur = "Segments", data.cfg.run.currency
    profiles = data.table("segment_profiles")
    if profiles is None:
        return _missing(title, "segments", "segment profiles")
    business = _business(profiles)
    best = business.iloc[0]
    finding = (
        f"{len(business)} segments; '{best['segment_name']}' is {pct(best['customer_share'])} of customers "
        f"and earns {pct(best['profit_share'])} of profit."
    )
    shown = pd.DataFrame(
        {
            "Segment": business["segment_name"],
            "Customers": business["customers"].map(num),
            "Share of customers": [interval(r, "customer_share", pct) for _, r in business.iterrows()],
            "Share of revenue": [interval(r, "revenue_share", pct) for _, r in business.iterrows()],
            "Share of profit": [interval(r, "profit_share", pct) for _, r in business.iterrows()],
            "Profit per customer": [
                interval(r, "profit_mean", lambda x: money(x, cur)) for _, r in business.iterrows()
            ],
            "CLV per customer": [
                interval(r, "clv_mean", lambda x: money(x, cur)) for _, r in business.iterrows()
            ],
            "Cost to serve per customer": business["cost_to_serve_mean"].map(lambda x: money(x, cur)),
        }
    )
    dpi = data.cfg.report.dpi
    blocks = [
        table(shown, "Segment profiles (95 % bootstrap intervals in brackets)"),
        image(
            plots.grouped_bars(
                business,
                "segment_name",
                {"customer_share": "customers", "revenue_share": "revenue", "profit_share": "profit"},
                title="Share of customers, revenue and profit",
                ylabel="share",
                dpi=dpi,
            ),
            "Each segment's share of customers, revenue and profit",
        ),
    ]
    traits = data.table("segment_traits")
    if traits is not None:
        flagged = traits[traits["is_trait"].astype(bool) & ~traits["is_outlier"].astype(bool)].copy()
        short = flagged["segment_name"].map(lambda n: n if len(n) <= 24 else n[:23] + "…")
        flagged["label"] = short + ": " + flagged["attribute"] + " = " + flagged["value"].astype(str)
        flagged = flagged.sort_values(["segment_name", "lift"], ascending=[True, False])
        if len(flagged):
            blocks.append(
                image(
                    plots.bars_with_intervals(
                        flagged,
                        "label",
                        "lift",
                        title="Trait lift (share in segment / share overall)",
                        ylabel="lift",
                        dpi=dpi,
                        horizontal=True,
                    ),
                    "The traits that set each segment apart, with 95 % intervals",
                )
            )
    return Section("segments", title, finding, blocks)


# --- 3. value concentration --------------------------------------------------------------


def section_concentration(data: ReportData) -> Section:
    title = "Value concentration"
    conc = data.table("value_concentration")
    if conc is None:
        return _missing(title, "concentration", "concentration tables")
    got = conc.set_index(["measure", "metric"])
    top = data.cfg.insights.headline_top
    label = f"top_{round(top * 100):d}_share"
    measures = list(dict.fromkeys(conc["measure"]))
    share_of = next((m for m in ("profit", "revenue", *measures) if (m, label) in got.index), None)
    gini_of = next((m for m in ("revenue", "profit", *measures) if (m, "gini") in got.index), None)
    parts = []
    if share_of is not None:
        t = got.loc[(share_of, label)]
        parts.append(
            f"The top {top:.0%} of customers hold {interval(t, 'value', lambda x: pct(x, 0))} of {share_of}"
        )
    if gini_of is not None:
        g = got.loc[(gini_of, "gini")]
        parts.append(f"the Gini of {gini_of} is {interval(g, 'value', lambda x: num(x, 3))}")
    finding = ("; ".join(parts) + ".") if parts else "Concentration of value."
    finding = finding[0].upper() + finding[1:]
    rows = conc[
        conc["metric"].isin(["gini", label, "negative_share", "whale_peak_multiple", "tail_destroyed"])
    ]
    shown = pd.DataFrame(
        {
            "Measure": rows["measure"],
            "Metric": rows["metric"],
            "Value": [interval(r, "value", lambda x: num(x, 3)) for _, r in rows.iterrows()],
            "Customers": rows["customers"].map(num),
        }
    )
    blocks = [table(shown, "Gini, top share and whale-curve figures (95 % intervals)")]
    curves = data.table("value_curves")
    if curves is not None:
        blocks.append(
            image(plots.curves(curves, dpi=data.cfg.report.dpi), "Lorenz curves and the whale curve")
        )
    return Section("concentration", title, finding, blocks)


# --- 4. cost to serve --------------------------------------------------------------------

COMPONENTS = {
    "support_chat_per_customer": "support: chat",
    "support_email_per_customer": "support: email",
    "support_phone_per_customer": "support: phone",
    "marketing_touches_per_customer": "marketing",
    "discounts_per_customer": "discounts",
    "cost_of_goods_per_customer": "cost of goods",
}


def section_cost(data: ReportData) -> Section:
    title, cur = "Cost to serve", data.cfg.run.currency
    cts = data.table("cost_to_serve")
    if cts is None:
        return _missing(title, "cost", "cost-to-serve table")
    business = cts[~cts["is_outlier"].astype(bool) & (cts["segment_name"] != ALL)]
    worst = business.loc[business["cost_to_serve_share_of_revenue"].idxmax()]
    finding = (
        f"'{worst['segment_name']}' spends "
        f"{interval(worst, 'cost_to_serve_share_of_revenue', lambda x: pct(x, 0))} "
        f"of its revenue on serving it ({money(worst['cost_to_serve_per_customer'], cur)} per customer)."
    )
    present = {k: v for k, v in COMPONENTS.items() if k in business}
    blocks = [
        image(
            plots.stacked_bars(
                business,
                "segment_name",
                present,
                title="Cost to serve per customer by component",
                ylabel=cur,
                dpi=data.cfg.report.dpi,
            ),
            "Cost to serve per customer, by component",
        ),
        table(
            pd.DataFrame(
                {
                    "Segment": business["segment_name"],
                    "Per customer": [
                        interval(r, "cost_to_serve_per_customer", lambda x: money(x, cur))
                        for _, r in business.iterrows()
                    ],
                    "Share of revenue": [
                        interval(r, "cost_to_serve_share_of_revenue", pct) for _, r in business.iterrows()
                    ],
                    "Unprofitable customers": [
                        interval(r, "unprofitable_share", pct) for _, r in business.iterrows()
                    ],
                    "Profit destroyed": business["profit_destroyed"].map(lambda x: money(x, cur)),
                }
            ),
            "Cost to serve by segment",
        ),
    ]
    scenarios = data.table("service_scenarios")
    if scenarios is not None and len(scenarios):
        blocks.append(
            table(
                pd.DataFrame(
                    {
                        "Scenario": scenarios["scenario"],
                        "Segment": scenarios["segment_name"],
                        "Customers": scenarios["customers"].map(num),
                        "Change in cost to serve": [
                            interval(r, "delta_cost_to_serve", lambda x: money(x, cur))
                            for _, r in scenarios.iterrows()
                        ],
                        "Change in profit": [
                            interval(r, "delta_profit", lambda x: money(x, cur))
                            for _, r in scenarios.iterrows()
                        ],
                        "Assumptions": scenarios["assumptions"],
                    }
                ),
                "Service scenarios (what-if, with their assumptions)",
            )
        )
    return Section("cost", title, finding, blocks)


# --- 5. CLV ------------------------------------------------------------------------------


def section_clv(data: ReportData) -> Section:
    title, cur, dpi = "Customer lifetime value", data.cfg.run.currency, data.cfg.report.dpi
    metrics = data.record.metrics("clv")
    check = data.table("clv_segment_check")
    holdout = data.record.artifact_json("clv", "clv/holdout_by_frequency.json")
    if check is None and holdout is None:
        return _missing(title, "clv", "CLV output")
    parts = []
    if check is not None and len(check):
        agree = int(check["ranks_agree"].astype(bool).sum())
        parts.append(
            f"the segments' value order agrees with their CLV order for {agree} of {len(check)} segments"
        )
    if "segments.spearman" in metrics:
        parts.append(f"Spearman {metrics['segments.spearman']:.2f}")
    if "holdout.corr" in metrics:
        parts.append(
            f"holdout correlation {metrics['holdout.corr']:.2f} "
            f"(naive {metrics.get('holdout.naive_corr', float('nan')):.2f})"
        )
    finding = ("CLV cross-check: " + "; ".join(parts) + ".") if parts else "CLV cross-check."
    blocks = []
    if holdout:
        blocks.append(
            image(
                plots.predicted_vs_actual(pd.DataFrame(holdout), dpi=dpi),
                "BG/NBD holdout fit by calibration frequency",
            )
        )
    profiles = data.table("segment_profiles")
    if profiles is not None:
        blocks.append(
            image(
                plots.bars_with_intervals(
                    _business(profiles),
                    "segment_name",
                    "clv_mean",
                    title="CLV per customer by segment",
                    ylabel=cur,
                    dpi=dpi,
                ),
                "Mean predicted CLV by segment (95 % intervals)",
            )
        )
    if check is not None:
        shown = check[
            ["segment", "customers", "mean_value", "mean_clv", "value_rank", "clv_rank", "ranks_agree"]
        ]
        blocks.append(table(shown.round(2), "Segment order by value and by CLV"))
    return Section("clv", title, finding, blocks)


# --- 6. segment quality --------------------------------------------------------------------


def section_quality(data: ReportData) -> Section:
    title = "Segment quality"
    selection = data.table("segment_model_selection")
    if selection is None:
        return _missing(title, "quality", "model-selection table")
    kp = selection[selection["algorithm"] == "kprototypes"].sort_values("k")
    chosen = selection[selection["chosen"].astype(bool)]
    chosen_k = int(chosen["k"].iloc[0]) if len(chosen) else None
    stability = data.table("segment_stability")
    finding = f"k = {chosen_k} chosen by rule '{selection['rule'].iloc[0]}'"
    if len(chosen):
        finding += f", silhouette {chosen['silhouette'].iloc[0]:.3f}"
    if stability is not None and stability["chosen"].astype(bool).any():
        mine = stability[stability["chosen"].astype(bool)]
        finding += f", smallest mean bootstrap Jaccard {mine['jaccard_mean'].min():.2f}"
    profiles = data.table("segment_profiles")
    outliers = 0
    if profiles is not None:
        outliers = int(profiles.loc[profiles["is_outlier"].astype(bool), "customers"].sum())
        finding += f"; {outliers:,} customers set aside as outliers"
    blocks = [image(plots.selection_by_k(kp, chosen_k, dpi=data.cfg.report.dpi), "Cost and silhouette by k")]
    if stability is not None:
        mine = stability[stability["chosen"].astype(bool)]
        if len(mine):
            blocks.append(
                table(
                    mine[
                        ["segment_name", "cluster", "customers", "jaccard_mean", "jaccard_min", "verdict"]
                    ].round(3),
                    "Bootstrap stability of the chosen segments (Jaccard per cluster)",
                )
            )
    cols = [c for c in ("algorithm", "k", "cost", "silhouette", "ari_mean", "chosen") if c in selection]
    blocks.append(table(selection[cols].round(4), "Every candidate: k-prototypes and the MLlib comparators"))
    return Section("quality", title, finding + ".", blocks)


# --- 7. migration ---------------------------------------------------------------------------


def section_migration(data: ReportData) -> Section:
    title = "Migration between segments"
    migration = data.table("segment_migration")
    if migration is None or migration.empty:
        return _missing(title, "migration", "migration table (one snapshot only)")
    consecutive = migration[migration["period"] == "consecutive"] if "period" in migration else migration
    last = consecutive[consecutive["to_snapshot"] == consecutive["to_snapshot"].max()]
    known = last[(last["from_segment"] != "(new)")]
    stayed = known.loc[known["from_segment"] == known["to_segment"], "customers"].sum()
    total = known["customers"].sum()
    frm, to = last["from_snapshot"].iloc[0], last["to_snapshot"].iloc[0]
    share = stayed / total if total else float("nan")
    finding = f"{pct(share)} of customers stayed in their segment from {frm} to {to}."
    matrix = last.pivot_table(
        index="from_segment", columns="to_segment", values="row_share", aggfunc="sum"
    ).fillna(0)
    blocks = [
        image(
            plots.heatmap(
                matrix, title=f"Segment migration {frm} to {to} (row shares)", dpi=data.cfg.report.dpi
            ),
            "Where each segment's customers went",
        )
    ]
    flows = data.table("segment_flows")
    if flows is not None and len(flows):
        latest = flows[flows["to_snapshot"] == flows["to_snapshot"].max()].sort_values("segment_name")
        blocks.append(table(latest, f"Inflow, outflow and new customers per segment, {frm} to {to}"))
    return Section("migration", title, finding, blocks)


# --- 8. channels ------------------------------------------------------------------------------


def section_channels(data: ReportData) -> Section:
    title, cur = "Channels and funnel", data.cfg.run.currency
    channels = data.table("channel_economics")
    if channels is None or channels.empty:
        return _missing(title, "channels", "channel table")
    overall = channels[channels["segment_name"] == "(all)"].copy()
    # channels that cost nothing to touch (direct, referral) have no cost per conversion to compare
    paid = overall[(overall["marketing_cost"] > 0) & overall["clv_to_acquisition_cost"].notna()]
    finding = "Marketing channels and their funnel."
    if len(paid):
        best = paid.loc[paid["clv_to_acquisition_cost"].idxmax()]
        finding = (
            f"Of the channels with a marketing cost, '{best['channel']}' returns the most CLV per unit of "
            f"acquisition cost: {best['clv_to_acquisition_cost']:.1f}x "
            f"({money(best['cost_per_paid'], cur)} per paid conversion)."
        )
    funnel = {
        c: c.removeprefix("reached_")
        for c in ("reached_visit", "reached_signup", "reached_trial", "reached_paid")
        if c in overall
    }
    blocks = [
        image(
            plots.grouped_bars(
                overall,
                "channel",
                funnel,
                title="Funnel by channel (customers reaching each step)",
                ylabel="customers",
                dpi=data.cfg.report.dpi,
            ),
            "Funnel by channel",
        ),
        table(
            pd.DataFrame(
                {
                    "Channel": overall["channel"],
                    "Touches": overall["touches"].map(num),
                    "Marketing cost": overall["marketing_cost"].map(lambda x: money(x, cur)),
                    "Cost per paid": overall["cost_per_paid"].map(lambda x: money(x, cur)),
                    "Acquired": overall["acquired_customers"].map(num),
                    "CLV / acquisition cost": overall["clv_to_acquisition_cost"].map(lambda x: num(x, 2)),
                }
            ),
            "Channel economics",
        ),
    ]
    return Section("channels", title, finding, blocks)


# --- 9. KPIs --------------------------------------------------------------------------------

KPIS = ("revenue", "profit", "active_customers")


def section_kpis(data: ReportData) -> Section:
    title = "Monthly KPIs"
    monthly = data.table("kpi_monthly")
    if monthly is None or monthly.empty:
        return _missing(title, "kpis", "monthly KPI table")
    monthly = monthly.sort_values("month")
    trends = data.table("kpi_trends")
    forecast = data.table("kpi_forecast")
    anomalies = data.table("kpi_anomalies")
    by_kpi = trends.set_index("kpi") if trends is not None else pd.DataFrame()
    finding = "Monthly KPIs."
    if "revenue" in by_kpi.index:
        r = by_kpi.loc["revenue"]
        finding = (
            f"Revenue moves by {pct(r['relative_slope'])} of its median a month "
            f"({money(r['slope_per_month'], data.cfg.run.currency)} a month, 95 % interval "
            f"{num(r['slope_lo'], 0)} to {num(r['slope_hi'], 0)})"
        )
        if anomalies is not None:
            finding += f"; {len(anomalies)} anomalous KPI months are marked"
        finding += "."
    blocks = []
    for kpi in (k for k in KPIS if k in monthly):
        blocks.append(
            image(
                plots.kpi_panel(
                    monthly,
                    kpi,
                    by_kpi.loc[kpi] if kpi in by_kpi.index else None,
                    forecast[forecast["kpi"] == kpi]
                    if forecast is not None
                    else pd.DataFrame(columns=["forecast"]),
                    anomalies[anomalies["kpi"] == kpi] if anomalies is not None else pd.DataFrame(),
                    dpi=data.cfg.report.dpi,
                ),
                f"{kpi.replace('_', ' ')}: trend, forecast band and anomalies",
            )
        )
    tests = data.table("kpi_tests")
    if tests is not None and len(tests):
        summary = tests.groupby(["test", "measure", "grouping"], as_index=False).first()
        blocks.append(
            table(
                summary[
                    ["measure", "grouping", "groups", "n_total", "h", "df", "p_value", "eta_squared"]
                ].round(4),
                "Industry tests (Kruskal-Wallis)",
            )
        )
    if anomalies is not None and len(anomalies):
        blocks.append(table(anomalies.round(2), "Anomalous months (robust z of the de-trended series)"))
    return Section("kpis", title, finding, blocks)


# --- 10. misallocation ---------------------------------------------------------------------------


def section_misallocation(data: ReportData) -> Section:
    title = "Misallocated investment"
    summary = data.table("misallocation_summary")
    if summary is None or summary.empty:
        return _missing(title, "misallocation", "misallocation summary")
    ins = data.cfg.insights
    overview = summary[summary["section"] == "overview"].set_index("metric")
    finding = "Misallocated investment."
    if "cohort_share_of_customers" in overview.index:
        share = overview.loc["cohort_share_of_customers"]
        rev = overview.loc["cohort_share_of_revenue"] if "cohort_share_of_revenue" in overview.index else None
        finding = (
            f"{interval(share, 'value', pct)} of customers are in the top {ins.investment_top:.0%} by "
            f"investment score but the bottom {ins.performance_bottom:.0%} by performance"
        )
        if rev is not None:
            finding += f"; they bring {interval(rev, 'value', pct)} of revenue"
        finding += "."
    blocks = []
    for section, caption in (
        ("overview", "The cohort"),
        ("lifecycle", "By lifecycle stage"),
        ("root_cause", "Root causes (groups with the highest cohort rate)"),
        ("correlation", "Does the investment score track outcomes?"),
        ("roi_by_level", "ROI by decision-maker level"),
    ):
        part = summary[summary["section"] == section]
        if part.empty:
            continue
        if section == "root_cause":
            rates = part[part["metric"] == "lift"].sort_values("value", ascending=False).head(10)
            part = part[
                part.set_index(["group", "subgroup"]).index.isin(rates.set_index(["group", "subgroup"]).index)
            ]
        shown = part.assign(value=[interval(r, "value", lambda x: num(x, 3)) for _, r in part.iterrows()])
        if section in ("lifecycle", "root_cause", "roi_by_level"):
            # one row per group, one column per metric
            keys = shown[["group", "subgroup"]].fillna("")
            shown = shown.assign(group=keys["group"], subgroup=keys["subgroup"])
            wide = shown.pivot_table(
                index=["group", "subgroup", "customers"], columns="metric", values="value", aggfunc="first"
            ).reset_index()
            wide.columns.name = None
            blocks.append(table(wide, caption))
        else:
            blocks.append(table(shown[["group", "subgroup", "metric", "value", "customers"]], caption))
    return Section("misallocation", title, finding, blocks)


# --- 11. identity stitching ---------------------------------------------------------------------


def section_stitching(data: ReportData) -> Section:
    title = "Identity stitching"
    ident = data.identity
    if not ident:
        return _missing(title, "stitching", "identity map")
    records, customers = int(ident["records"]), int(ident["customers"])
    finding = (
        f"{records:,} identity records resolve to {customers:,} customers "
        f"({records / customers:.2f} records each); {int(ident['review_queue']):,} records wait for review."
    )
    blocks = []
    facts = [
        f"records: {records:,}",
        f"customers: {customers:,}",
        "records resting on a probabilistic link (confidence below 1): "
        f"{int(ident['probabilistic_records']):,}",
        f"review queue: {int(ident['review_queue']):,} records",
    ]
    truth = {
        k.removeprefix("truth."): v
        for k, v in data.record.metrics("stitch").items()
        if k.startswith("truth.")
    }
    if truth:
        facts.append(
            "against the generator's truth: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(truth.items()))
        )
    blocks.append(Block("list", facts, "Records, customers and review queue"))
    if data.links is not None:
        blocks.append(table(data.links, "Links by kind (accepted or vetoed)"))
    reasons = ident.get("reasons")
    if reasons is not None and len(reasons):
        blocks.append(table(reasons, "Review queue by reason"))
    if data.confidence_bins is not None:
        blocks.append(
            image(
                plots.histogram(
                    data.confidence_bins,
                    title="Match confidence of each record",
                    xlabel="match confidence",
                    dpi=data.cfg.report.dpi,
                ),
                "Match-confidence histogram",
            )
        )
    quality = data.table("stitch_quality_by_segment")
    if quality is not None:
        shown = quality.assign(
            low_confidence_share=[interval(r, "low_confidence_share", pct) for _, r in quality.iterrows()],
            low_confidence_revenue_share=[
                interval(r, "low_confidence_revenue_share", pct) for _, r in quality.iterrows()
            ],
        )
        blocks.append(
            table(
                shown[
                    [
                        "segment_name",
                        "customers",
                        "low_confidence_customers",
                        "low_confidence_share",
                        "low_confidence_revenue_share",
                    ]
                ],
                "Match uncertainty by segment",
            )
        )
    return Section("stitching", title, finding, blocks)


# --- 12. data quality ----------------------------------------------------------------------------


def section_data_quality(data: ReportData) -> Section:
    title = "Data quality"
    rows = []
    for table_name in TABLE_ORDER:
        report = data.record.artifact_json("ingest", f"ingest/{table_name}.json")
        if not report:
            continue
        metrics = data.record.metrics("ingest")
        read = sum(report.get("read", {}).values())
        quarantined = report.get("by_reason", {})
        rows.append(
            {
                "table": table_name,
                "rows read": read,
                "loaded": int(metrics.get(f"{table_name}.inserted", 0)),
                "already loaded": int(metrics.get(f"{table_name}.already_loaded", 0)),
                "quarantined": int(sum(quarantined.values())),
                "quarantined by reason": ", ".join(f"{k}: {v}" for k, v in sorted(quarantined.items()))
                or "none",
                "orphans": int(metrics.get(f"{table_name}.orphans", 0)),
            }
        )
    if not rows:
        return _missing(
            title, "data-quality", "ingest record (the ingest stage did not run under this run id)"
        )
    frame = pd.DataFrame(rows)
    read, quarantined = frame["rows read"].sum(), frame["quarantined"].sum()
    finding = (
        f"{int(read):,} rows read, {int(frame['loaded'].sum()):,} loaded and {int(quarantined):,} "
        f"({pct(quarantined / read if read else float('nan'), 2)}) quarantined with their reason; "
        f"{int(frame['orphans'].sum()):,} event rows are orphans (no identity record)."
    )
    return Section(
        "data-quality",
        title,
        finding,
        [table(frame, "Rows read, loaded and quarantined per table (this run's ingest)")],
    )


# --- 13. the run ------------------------------------------------------------------------------------


def config_differences(logged: dict[str, str], cfg: Config) -> pd.DataFrame:
    """Config keys whose value in the run differs from custseg's defaults (the run's
    logged config when tracked, else the given config)."""
    # as logged: written, redacted (never the expanded config, which may hold secrets)
    defaults = {k: str(v) for k, v in flatten(Config().loggable()).items()}
    used = logged or {k: str(v) for k, v in flatten(cfg.loggable()).items()}
    rows = [
        {"key": k, "run": redact(k, v), "default": redact(k, defaults.get(k, "(not a default key)"))}
        for k, v in sorted(used.items())
        if defaults.get(k) != v
    ]
    return pd.DataFrame(rows, columns=["key", "run", "default"])


def section_run(data: ReportData) -> Section:
    title = "The run"
    diffs = config_differences(data.record.logged("config"), data.cfg)
    stages = data.record.stages
    order = {s: i for i, s in enumerate(list(STAGES))}
    times = pd.DataFrame(
        [
            {
                "stage": s,
                "status": r.info.status,
                "seconds": round(r.data.metrics.get("stage_seconds", float("nan")), 1),
            }
            for s, r in sorted(stages.items(), key=lambda kv: order.get(kv[0], 99))
        ],
        columns=["stage", "status", "seconds"],
    )
    total = float(np.nansum(times["seconds"])) if len(times) else float("nan")
    written = sum(v.written is not None for v in data.versions.values())
    finding = (
        f"Run {data.run_id}: {len(times)} stages tracked taking {num(total, 0)} s, {written} of "
        f"{len(data.versions)} tables written by this run, {len(diffs)} settings differ from the defaults."
    )
    versions = data.record.logged("version") or package_versions()
    tables = pd.DataFrame(
        [
            {
                "table": v.table,
                "version read": v.version,
                "written by this run": "yes" if v.written is not None else f"no (newest by {v.latest_run})",
                "operation": v.operation,
                "newest version": v.latest,
            }
            for v in data.versions.values()
        ]
    )
    blocks = [
        Block(
            "list",
            [
                f"run id: {data.run_id}",
                f"warehouse: {data.cfg.storage.warehouse}",
                f"MLflow experiment: {data.cfg.tracking.experiment}",
            ],
            "Identity of the run",
        ),
        table(times, "Stage times"),
        table(diffs, "Settings that differ from the defaults"),
        table(pd.DataFrame(sorted(versions.items()), columns=["package", "version"]), "Package versions"),
        table(tables, "Every table's Delta version (as this report read it)"),
    ]
    return Section("run", title, finding, blocks)


SECTIONS: tuple[Callable[[ReportData], Section], ...] = (
    section_answers,
    section_segments,
    section_concentration,
    section_cost,
    section_clv,
    section_quality,
    section_migration,
    section_channels,
    section_kpis,
    section_misallocation,
    section_stitching,
    section_data_quality,
    section_run,
)
TITLES = (
    "The answers",
    "Segments",
    "Value concentration",
    "Cost to serve",
    "Customer lifetime value",
    "Segment quality",
    "Migration between segments",
    "Channels and funnel",
    "Monthly KPIs",
    "Misallocated investment",
    "Identity stitching",
    "Data quality",
    "The run",
)


def build_sections(data: ReportData) -> list[Section]:
    return [build(data) for build in SECTIONS]
