"""How separable are the latent segments on the segment stage's inputs? A supervised ceiling.

    .venv/bin/python bench/segment_ceiling.py --preset small [--data DIR] [--seed 7] [--rows N]
        [--set segment.numeric_features=[...]]

1. Draws the preset once into DIR and builds its as-of features from the true identity
   map (as bench/segment.py; a draw in DIR is reused), then the stage's model inputs
   (the prep SQL and the scaler of the config, ``--set`` overrides included).
2. Trains scikit-learn's HistGradientBoostingClassifier on exactly those inputs against
   the generator's latent segment (bots left out), with 5-fold cross-validated
   predictions on a seeded sample of at most ``--rows`` customers: the adjusted Rand
   index (ARI) of the predicted segments against the truth is the ceiling a clustering
   of the same inputs can hope for; also accuracy and the core segment's recall and
   precision.
3. Each numeric input's eta squared (the share of its variance between the latent
   segments: 1.0 means the input alone names the segment), then how much each feature
   family adds: the ceiling with one family alone and with one
   family left out (recency/frequency/monetary, margin and cost to serve, engagement,
   categorical attributes), and with every column of the feature table (is something
   the stage does not use worth using?).
4. k-prototypes at the true k = 4 on the same inputs (all business rows, the config's
   start and starts per fit): its ARI and the core's recall/precision in the cluster
   holding most core customers, as a share of the ceiling.
Asserts nothing.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
from _common import bench_parser, bench_session
from pyspark.sql import functions as F
from segment import draw_features, say, truth_segments
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import accuracy_score, adjusted_rand_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from custseg.config import SegmentConfig
from custseg.segment import KPrototypes
from custseg.segment.inputs import categorical_inputs, fit_prep, numeric_inputs
from custseg.segment.kprototypes import mixed_gamma

log = logging.getLogger("bench.segment_ceiling")

# Feature families by the input's name: the first family with a word in the name
# (orders_per_active_year is frequency, support_per_active_year cost to serve).
FAMILIES: dict[str, tuple[str, ...]] = {
    "recency/frequency/monetary": ("order", "monetary", "recency", "tenure", "purchase", "gap", "sales"),
    "margin & cost to serve": (
        "discount",
        "cost",
        "cogs",
        "margin",
        "support",
        "unresolved",
        "touch",
        "profit",
    ),
    "engagement": ("active", "session", "features_used", "usage"),
}
CATEGORICAL = "categorical attributes"
SKIP = {"customer_id", "snapshot_date", "first_event_date", "first_purchase_date", "last_purchase_date"}


def family_of(name: str) -> str:
    for family, words in FAMILIES.items():
        if any(w in name for w in words):
            return family
    return "other"


def eta_squared(values: pd.Series, groups: pd.Series) -> float:
    """Between-group sum of squares over the total: 1.0 when the groups alone set the value."""
    centred = values - values.mean()
    by = centred.groupby(groups)
    total = float((centred**2).sum())
    return float((by.count() * by.mean() ** 2).sum() / total) if total > 0 else float("nan")


def ceiling(frame: pd.DataFrame, numeric: list[str], categorical: list[str], seed: int) -> dict[str, float]:
    """Cross-validated gradient boosting on the given columns: ARI, accuracy, core recall/precision."""
    x = frame[numeric + categorical].copy()
    for c in categorical:
        x[c] = x[c].astype("category")
    model = HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.1, categorical_features="from_dtype", random_state=seed
    )
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    predicted = cross_val_predict(model, x, frame["latent"], cv=folds)
    return quality(frame["latent"].to_numpy(), predicted)


def quality(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """ARI, accuracy (for a supervised prediction) and the core segment as found: recall
    and precision of the predicted group holding most core customers."""
    table = pd.crosstab(pd.Series(predicted, name="p"), pd.Series(truth, name="t"))
    core_group = table["core"].idxmax()
    return {
        "ari": adjusted_rand_score(truth, predicted),
        "accuracy": accuracy_score(truth, predicted) if set(predicted) <= set(truth) else float("nan"),
        "core_recall": table.loc[core_group, "core"] / table["core"].sum(),
        "core_precision": table.loc[core_group, "core"] / table.loc[core_group].sum(),
    }


def line(label: str, q: dict[str, float], seconds: float) -> str:
    return (
        f"  {label:<44} ARI {q['ari']:.3f}  accuracy {q['accuracy']:.3f}  core recall {q['core_recall']:.3f}"
        f"  precision {q['core_precision']:.3f}  ({seconds:.0f} s)"
    )


def main() -> None:
    parser = bench_parser(__doc__ or "", "draw folder (reused when it holds a draw)")
    parser.add_argument("--rows", type=int, default=150_000, help="customers the classifier sees, at most")
    parser.add_argument("--no-kprototypes", action="store_true", help="only the supervised ceilings")
    parser.add_argument("--no-ceiling", action="store_true", help="only k-prototypes at k = 4")
    args = parser.parse_args()
    cfg, spark, out, _ = bench_session(args, "segment_ceiling")
    sc: SegmentConfig = cfg.segment
    seed = cfg.run.seed
    features = draw_features(spark, cfg, out)
    numeric, categorical = numeric_inputs(sc), categorical_inputs(sc)
    prepared = fit_prep(sc, features).transform(features)
    truth = truth_segments(spark, out)
    business = prepared.join(truth, "customer_id", "inner").where(~F.col("is_bot")).cache()
    n = business.count()
    extra_numeric = [
        c
        for c, t in features.dtypes
        if c not in SKIP and t in ("double", "int", "bigint", "float") and c not in sc.numeric_features
    ]
    extra_categorical = [c for c, t in features.dtypes if t == "string" and c not in SKIP]
    fraction = min(1.0, args.rows / n)
    frame = (
        business.sample(fraction=fraction, seed=seed)
        .select(
            "latent",
            *numeric,
            *categorical,
            *extra_numeric,
            *[F.col(c).alias(f"all_{c}") for c in extra_categorical],
        )
        .toPandas()
    )
    for c in extra_categorical:
        frame[f"all_{c}"] = frame[f"all_{c}"].fillna("unknown")
    say(
        f"preset {args.preset}, seed {seed}: {n:,} business customers (bots left out), classifier on "
        f"{len(frame):,}; inputs: {len(numeric)} numeric + {len(categorical)} categorical; "
        "HistGradientBoostingClassifier, 5-fold cross-validated predictions"
    )
    say(pd.Series(frame["latent"]).value_counts(normalize=True).round(3).to_string())

    families: dict[str, tuple[list[str], list[str]]] = {}
    for c, z in zip(sc.numeric_features, numeric, strict=True):
        families.setdefault(family_of(c), ([], []))[0].append(z)
    if categorical:
        families[CATEGORICAL] = ([], categorical)
    say("\n== share of each numeric input's variance between the latent segments (eta squared) ==")
    for c in numeric:
        say(f"  {c:<44} {eta_squared(frame[c], frame['latent']):.3f}")
    say("\n== supervised ceiling on the stage's inputs ==")
    runs: list[tuple[str, list[str], list[str]]] = [("all stage inputs", numeric, categorical)]
    for family, (num, cat) in families.items():
        runs.append((f"only {family}", num, cat))
    for family in families:
        num = [c for f, (ns, _) in families.items() if f != family for c in ns]
        cat = [c for f, (_, cs) in families.items() if f != family for c in cs]
        runs.append((f"without {family}", num, cat))
    runs.append(
        (
            "every feature-table column",
            numeric + extra_numeric,
            categorical + [f"all_{c}" for c in extra_categorical],
        )
    )
    if args.no_ceiling:
        runs = runs[:1]
    results: dict[str, dict[str, float]] = {}
    for label, num, cat in runs:
        started = time.perf_counter()
        results[label] = ceiling(frame, num, cat, seed)
        say(line(label, results[label], time.perf_counter() - started))
    say("  families: " + "; ".join(f"{f}: {', '.join(n + c)}" for f, (n, c) in families.items()))

    if args.no_kprototypes:
        return
    stds = [float(s or 0.0) for s in business.agg(*[F.stddev_pop(c) for c in numeric]).first() or []]
    gamma = sc.gamma or mixed_gamma(stds)
    started = time.perf_counter()
    model = KPrototypes(
        k=4,
        numericCols=numeric,
        categoricalCols=categorical,
        gamma=gamma,
        initMode=sc.init_mode,
        nInit=sc.n_init,
        maxIter=sc.max_iter,
        tol=sc.tol,
        seed=seed,
    ).fit(business)
    counts = model.transform(business).groupBy("latent", "segment").count().toPandas()
    seconds = time.perf_counter() - started
    q = quality(
        np.repeat(counts["latent"].to_numpy(), counts["count"]),
        np.repeat(counts["segment"].to_numpy(), counts["count"]),
    )
    top = results["all stage inputs"]
    say(f"\n== k-prototypes at k = 4 on all {n:,} business customers (gamma {gamma:.3f}) ==")
    say(line("k-prototypes k=4", q, seconds))
    say(
        f"  share of the ceiling: ARI {q['ari'] / top['ari']:.1%}, "
        f"core recall {q['core_recall'] / top['core_recall']:.1%}, "
        f"core precision {q['core_precision'] / top['core_precision']:.1%}"
    )
    say(counts.pivot(index="segment", columns="latent", values="count").fillna(0).astype(int).to_string())


if __name__ == "__main__":
    main()
