"""The segment stage's charts, saved as HTML artifacts of its MLflow run."""

from __future__ import annotations

import tempfile
from pathlib import Path

import altair as alt
import pandas as pd

from custseg.tracking import StageRun


def save_plots(
    selection: pd.DataFrame, stability: pd.DataFrame | None, profiles: pd.DataFrame, run: StageRun
) -> None:
    """Cost and silhouette by k, stability by cluster, segment profiles: HTML artifacts."""
    charts = {
        "selection_by_k.html": alt.hconcat(
            *[
                alt.Chart(selection)
                .mark_line(point=True)
                .encode(x="k:O", y=alt.Y(f"{metric}:Q", scale=alt.Scale(zero=False)), color="algorithm:N")
                .properties(title=f"{metric} by k", width=320, height=240)
                for metric in ("cost", "silhouette")
            ]
        ),
        "segment_profiles.html": alt.Chart(
            profiles.melt(
                id_vars=["segment_name"], value_vars=[c for c in profiles.columns if c.startswith("z_")]
            )
        )
        .mark_rect()
        .encode(
            x="variable:N", y="segment_name:N", color=alt.Color("value:Q", scale=alt.Scale(scheme="redblue"))
        )
        .properties(title="segment prototypes (standardised)", width=520),
    }
    if stability is not None:
        charts["stability_by_cluster.html"] = (
            alt.Chart(stability)
            .mark_bar()
            .encode(
                x="segment_name:N",
                y=alt.Y("jaccard_mean:Q", scale=alt.Scale(domain=[0, 1])),
                color="verdict:N",
            )
            .properties(title="bootstrap Jaccard by segment", width=420, height=260)
        )
    with tempfile.TemporaryDirectory() as tmp:
        for name, chart in charts.items():
            path = Path(tmp) / name
            chart.save(str(path))
            run.log_artifact(path, "segment")
