"""The report's figures: matplotlib (Agg backend, no display, no network), each returned
as a base64 PNG for an inline ``<img src="data:image/png;base64,...">``.

Every function takes small pandas frames read from the gold tables (one row per segment,
month, bin or k) and draws nothing but what they hold.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

PALETTE = ["#1f5f8b", "#e07a1f", "#3a923a", "#c03d3e", "#8464a8", "#8b5a4a", "#d877b8", "#7f7f7f"]


def encode(fig: Figure, dpi: int) -> str:
    """The figure as a base64 PNG (the figure is closed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _short(labels: Sequence[str], width: int = 28) -> list[str]:
    return [s if len(s) <= width else s[: width - 1] + "…" for s in map(str, labels)]


def grouped_bars(
    frame: pd.DataFrame, label_col: str, value_cols: dict[str, str], *, title: str, ylabel: str, dpi: int
) -> str:
    """One group of bars per row of ``frame`` (one bar per column of ``value_cols``:
    column -> legend label)."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    x = np.arange(len(frame))
    width = 0.8 / max(len(value_cols), 1)
    for i, (col, label) in enumerate(value_cols.items()):
        ax.bar(
            x + i * width - 0.4 + width / 2, frame[col].astype(float), width, label=label, color=PALETTE[i]
        )
    ax.set_xticks(x, _short(frame[label_col]), rotation=20, ha="right")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    return encode(fig, dpi)


def bars_with_intervals(
    frame: pd.DataFrame,
    label_col: str,
    col: str,
    *,
    title: str,
    ylabel: str,
    dpi: int,
    horizontal: bool = False,
) -> str:
    """One bar per row with its interval (``col_lo``..``col_hi``) as an error bar."""
    values = frame[col].astype(float).to_numpy()
    lo = frame.get(f"{col}_lo", frame[col]).astype(float).to_numpy()
    hi = frame.get(f"{col}_hi", frame[col]).astype(float).to_numpy()
    err = np.vstack([np.nan_to_num(values - lo), np.nan_to_num(hi - values)])
    labels = _short(frame[label_col], 60 if horizontal else 28)
    size = (9.0, max(2.4, 0.3 * len(frame) + 1)) if horizontal else (8.0, 3.4)
    fig, ax = plt.subplots(figsize=size)
    if horizontal:
        y = np.arange(len(frame))[::-1]
        ax.barh(y, values, xerr=err, color=PALETTE[0], capsize=3)
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_xlabel(ylabel)
    else:
        x = np.arange(len(frame))
        ax.bar(x, values, yerr=err, color=PALETTE[0], capsize=3)
        ax.set_xticks(x, labels, rotation=20, ha="right")
        ax.set_ylabel(ylabel)
        ax.axhline(0, color="black", linewidth=0.6)
    ax.set_title(title)
    return encode(fig, dpi)


def stacked_bars(
    frame: pd.DataFrame, label_col: str, value_cols: dict[str, str], *, title: str, ylabel: str, dpi: int
) -> str:
    """Stacked bars: one bar per row, one layer per column of ``value_cols``."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    x = np.arange(len(frame))
    bottom = np.zeros(len(frame))
    for i, (col, label) in enumerate(value_cols.items()):
        values = frame[col].astype(float).fillna(0).to_numpy()
        ax.bar(x, values, bottom=bottom, label=label, color=PALETTE[i % len(PALETTE)])
        bottom += values
    ax.set_xticks(x, _short(frame[label_col]), rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8, ncol=2)
    return encode(fig, dpi)


def curves(curves_frame: pd.DataFrame, *, dpi: int) -> str:
    """Lorenz curves (one per measure) beside the whale curve of profit, when there is one."""
    whale = curves_frame[curves_frame["curve"] == "whale"]
    if len(whale):
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    else:
        fig, left = plt.subplots(figsize=(5, 3.6))
    lorenz = curves_frame[curves_frame["curve"] == "lorenz"]
    for i, (measure, rows) in enumerate(lorenz.groupby("measure", sort=True)):
        left.plot(rows["customer_share"], rows["cumulative_share"], label=str(measure), color=PALETTE[i])
    left.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8, label="equality")
    left.set_xlabel("share of customers (least valuable first)")
    left.set_ylabel("cumulative share of value")
    left.set_title("Lorenz curves")
    left.legend(frameon=False, fontsize=8)
    if len(whale):
        for i, (measure, rows) in enumerate(whale.groupby("measure", sort=True)):
            right.plot(
                rows["customer_share"], rows["cumulative_share"], label=str(measure), color=PALETTE[i + 1]
            )
        right.axhline(1.0, color="grey", linestyle=":", linewidth=0.8)
        right.set_xlabel("share of customers (most profitable first)")
        right.set_ylabel("cumulative share of total profit")
        right.set_title("Whale curve")
        right.legend(frameon=False, fontsize=8)
    return encode(fig, dpi)


def predicted_vs_actual(table: pd.DataFrame, *, dpi: int) -> str:
    """CLV holdout: mean actual against mean predicted purchases by calibration frequency."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    x = np.arange(len(table))
    ax.plot(x, table["actual"], marker="o", color=PALETTE[0], label="actual (holdout)")
    ax.plot(x, table["predicted"], marker="s", color=PALETTE[1], label="BG/NBD predicted")
    if "naive" in table:
        ax.plot(
            x, table["naive"], marker="^", color=PALETTE[7], linestyle=":", label="naive (calibration rate)"
        )
    ax.set_xticks(x, [str(b) for b in table["bucket"]])
    ax.set_xlabel("repeat purchases in the calibration period")
    ax.set_ylabel("mean purchases in the holdout")
    ax.set_title("CLV holdout fit")
    ax.legend(frameon=False, fontsize=8)
    return encode(fig, dpi)


def selection_by_k(selection: pd.DataFrame, chosen_k: int | None, *, dpi: int) -> str:
    """Cost and silhouette of the k-prototypes sweep, the chosen k marked."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.plot(selection["k"], selection["cost"], marker="o", color=PALETTE[0])
    left.set_xlabel("k")
    left.set_ylabel("cost")
    left.set_title("k-prototypes cost by k")
    right.plot(selection["k"], selection["silhouette"], marker="o", color=PALETTE[1])
    right.set_xlabel("k")
    right.set_ylabel("silhouette (sample)")
    right.set_title("silhouette by k")
    if chosen_k is not None:
        for ax in (left, right):
            ax.axvline(
                chosen_k, color=PALETTE[3], linestyle="--", linewidth=1, label=f"chosen k = {chosen_k}"
            )
        right.legend(frameon=False, fontsize=8)
    return encode(fig, dpi)


def heatmap(matrix: pd.DataFrame, *, title: str, dpi: int) -> str:
    """Row shares as a heat map with the values written in the cells."""
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(matrix) + 2))
    image = ax.imshow(matrix.to_numpy(dtype=float), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(matrix.shape[1]), _short(matrix.columns, 22), rotation=25, ha="right", fontsize=8)
    ax.set_yticks(range(matrix.shape[0]), _short(matrix.index, 30), fontsize=8)
    ax.set_xlabel("to segment")
    ax.set_ylabel("from segment")
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            value = float(matrix.iat[i, j])
            if value > 0:
                colour = "white" if value > 0.6 else "black"
                ax.text(j, i, f"{value:.0%}", ha="center", va="center", fontsize=7, color=colour)
    fig.colorbar(image, ax=ax, fraction=0.03)
    ax.set_title(title)
    return encode(fig, dpi)


def kpi_panel(
    monthly: pd.DataFrame,
    kpi: str,
    trend: pd.Series | None,
    forecast: pd.DataFrame,
    anomalies: pd.DataFrame,
    *,
    dpi: int,
) -> str:
    """One KPI by month: values, the Theil-Sen trend, the forecast with its band and the
    anomalous months marked."""
    fig, ax = plt.subplots(figsize=(8, 3))
    months = pd.to_datetime(monthly["month"])
    ax.plot(months, monthly[kpi].astype(float), marker=".", color=PALETTE[0], label=kpi)
    complete = monthly[monthly["complete"]] if "complete" in monthly else monthly
    if trend is not None and np.isfinite(trend["slope_per_month"]) and len(complete):
        t = np.arange(len(complete))
        ax.plot(
            pd.to_datetime(complete["month"]),
            trend["intercept"] + trend["slope_per_month"] * t,
            color=PALETTE[7],
            linestyle="--",
            label="Theil-Sen trend",
        )
    if len(forecast) and forecast["forecast"].notna().any():
        fm = pd.to_datetime(forecast["month"])
        ax.plot(
            fm,
            forecast["forecast"],
            color=PALETTE[1],
            marker=".",
            label=f"forecast ({forecast['method'].iloc[0]})",
        )
        ax.fill_between(
            fm, forecast["lo"].astype(float), forecast["hi"].astype(float), color=PALETTE[1], alpha=0.2
        )
    if len(anomalies):
        ax.scatter(
            pd.to_datetime(anomalies["month"]),
            anomalies["value"],
            color=PALETTE[3],
            zorder=5,
            label="anomaly",
        )
    ax.set_title(kpi.replace("_", " "))
    ax.legend(frameon=False, fontsize=7, loc="upper left")
    fig.autofmt_xdate()
    return encode(fig, dpi)


def histogram(bins: pd.DataFrame, *, title: str, xlabel: str, dpi: int) -> str:
    """A histogram already binned: columns ``lo``, ``hi``, ``count``."""
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar(
        bins["lo"],
        bins["count"],
        width=(bins["hi"] - bins["lo"]),
        align="edge",
        color=PALETTE[0],
        edgecolor="white",
    )
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("records (log scale)")
    ax.set_title(title)
    return encode(fig, dpi)
