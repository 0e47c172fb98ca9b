"""Segmentation: KPrototypes against kmodes, scaling and persistence, silhouette against
sklearn, bootstrap stability, outliers and names, and the stage with scoring on the tiny
preset (real Spark, Delta and MLflow)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from kmodes.kprototypes import KPrototypes as KmodesKPrototypes
from mlflow.tracking import MlflowClient
from pyspark.ml import Pipeline, PipelineModel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from scipy.spatial.distance import cdist
from scipy.stats.contingency import association
from sklearn.metrics import adjusted_rand_score, silhouette_score

from custseg.config import load_config
from custseg.contract import OUTLIER
from custseg.features import FeatureSpec, build_feature_snapshots
from custseg.generate import GeneratedWorld
from custseg.pipeline import run_stage
from custseg.segment import KPrototypes, KPrototypesModel, LogStandardScaler
from custseg.segment.blocks import MAX_CATEGORY_VALUES, ColumnBlocks
from custseg.segment.naming import outlier_clusters, segment_names, tiers
from custseg.segment.validate import (
    Stability,
    adjusted_rand_index,
    best_jaccard,
    bootstrap_stability,
    contingency,
    cramers_v,
    cramers_v_interval,
    mixed_dissimilarity_matrix,
    silhouette_samples,
    smallest_value_effect,
    value_by_cluster,
)
from custseg.tables import TableStore
from custseg.tracking import load_registered_spark_model

from .conftest import TEST_CONF, temp_overrides

NUM, CAT = ["u", "v"], ["p", "q"]


def blobs(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Three mixed clusters: Gaussian numerics, categoricals with 20 % noise."""
    rng = np.random.RandomState(seed)
    label = rng.randint(0, 3, n)
    x = np.array([[0, 0], [4, 4], [0, 5]])[label] + rng.randn(n, 2) * 0.8
    cats = np.array([["a", "x"], ["b", "y"], ["c", "x"]])[label]
    noise = rng.rand(n, 2) < 0.2
    cats = np.where(noise, rng.choice(["a", "b", "c"], (n, 2)), cats)
    return pd.DataFrame({"id": np.arange(n), "u": x[:, 0], "v": x[:, 1], "p": cats[:, 0], "q": cats[:, 1]})


def kprototypes_cost(pdf: pd.DataFrame, centres: np.ndarray, modes: np.ndarray, gamma: float) -> np.ndarray:
    """Per row, the cost to each prototype, computed independently in numpy."""
    num = cdist(pdf[NUM].to_numpy(float), centres, "sqeuclidean")
    cat = (pdf[CAT].to_numpy(object)[:, None, :] != modes[None, :, :]).sum(axis=2)
    return np.asarray(num + gamma * cat)


def test_kprototypes_matches_kmodes_from_the_same_start(spark: SparkSession) -> None:
    pdf = blobs()
    df = spark.createDataFrame(pdf)
    start = [[pdf.u[i], pdf.v[i], pdf.p[i], pdf.q[i]] for i in (0, 1, 2)]
    gamma = 0.7
    model = KPrototypes(
        k=3, numericCols=NUM, categoricalCols=CAT, gamma=gamma, initialCentres=start, tol=0.0
    ).fit(df)
    ours = model.transform(df).orderBy("id").toPandas()

    codes = [{v: i for i, v in enumerate(np.unique(pdf[c]))} for c in CAT]
    init = [np.array([s[:2] for s in start]), np.array([[codes[0][s[2]], codes[1][s[3]]] for s in start])]
    ref = KmodesKPrototypes(n_clusters=3, init=init, gamma=gamma, n_init=1).fit(
        pdf[NUM + CAT].to_numpy(), categorical=[2, 3]
    )

    np.testing.assert_array_equal(ours["segment"].to_numpy(), ref.labels_)
    assert model.summary.trainingCost == pytest.approx(ref.cost_, rel=1e-6)
    assert model.summary.converged and model.summary.clusterSizes == np.bincount(ref.labels_).tolist()
    np.testing.assert_allclose(
        np.array(model.clusterCenters()), ref.cluster_centroids_[:, :2].astype(float), rtol=1e-9
    )
    assert model.clusterModes() == ref.cluster_centroids_[:, 2:].tolist()
    with pytest.warns(DeprecationWarning, match="use clusterCenters"):
        np.testing.assert_array_equal(np.array(model.clusterCentres()), np.array(model.clusterCenters()))
    # the cost is what it claims to be: an independent numpy evaluation at the final prototypes
    cost = kprototypes_cost(
        pdf, np.array(model.clusterCenters()), np.array(model.clusterModes(), dtype=object), gamma
    )
    assert cost.min(axis=1).sum() == pytest.approx(model.summary.trainingCost, rel=1e-9)
    assert model.computeCost(df) == pytest.approx(model.summary.trainingCost, rel=1e-9)


def test_kprototypes_best_cost_within_one_percent_of_kmodes(spark: SparkSession) -> None:
    """Default gamma (kmodes' rule), our starts over seeds against kmodes' best of n_init."""
    pdf = blobs(n=400, seed=3)
    df = spark.createDataFrame(pdf).cache()
    ref = KmodesKPrototypes(n_clusters=4, n_init=4, random_state=0).fit(
        pdf[NUM + CAT].to_numpy(), categorical=[2, 3]
    )
    costs = {}
    for mode, seed in (("k-means||", 1), ("k-means||", 2), ("cao", 0), ("huang", 5)):
        model = KPrototypes(k=4, numericCols=NUM, categoricalCols=CAT, initMode=mode, seed=seed).fit(df)
        assert model.gamma == pytest.approx(ref.gamma, rel=1e-9)  # 0.5 x mean population std
        costs[(mode, seed)] = model.summary.trainingCost
    assert min(costs.values()) <= 1.01 * ref.cost_, (costs, ref.cost_)
    again = KPrototypes(k=4, numericCols=NUM, categoricalCols=CAT, initMode="huang", seed=5).fit(df)
    assert again.summary.trainingCost == costs[("huang", 5)]  # seeded: reproducible
    # nInit=2 from seed 1 runs the starts of seeds 1 and 2 and keeps the cheaper
    best = KPrototypes(k=4, numericCols=NUM, categoricalCols=CAT, initMode="k-means||", seed=1, nInit=2)
    assert best.fit(df).summary.trainingCost == min(costs[("k-means||", 1)], costs[("k-means||", 2)])
    with pytest.raises(ValueError, match=r"no column\(s\) \['w'\]"):
        KPrototypes(k=2, numericCols=["w"], categoricalCols=CAT).fit(df)
    with pytest.raises(ValueError, match="null values in input columns"):
        KPrototypes(k=2, numericCols=NUM, categoricalCols=CAT).fit(
            df.withColumn("u", F.lit(None).cast("double"))
        )


def test_blocks_profile_and_pass_statistics_against_pandas(spark: SparkSession) -> None:
    """Blocks of 16 rows (each with its own vocabulary, some without every value) over 3
    partitions: count, population stds, vocabularies and one pass's cost, sizes, sums and
    category tallies equal a pandas computation; identifier-like columns are refused."""
    pdf = blobs(200, seed=3)
    pdf.loc[pdf.index[:5], "q"] = "z-rare"  # a value only the first block holds
    batch = spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "8")  # blocks end on batches
    blocks = ColumnBlocks(spark.createDataFrame(pdf).repartition(3), NUM, CAT, block_rows=16)
    try:
        assert blocks.frame.count() >= 200 // 16
        assert blocks.n == 200 and blocks.vocab == [sorted(set(pdf[c])) for c in CAT]
        np.testing.assert_allclose(blocks.std, pdf[NUM].std(ddof=0).to_numpy(), rtol=1e-12)
        centres = np.array([[0.0, 0.0], [4.0, 4.0], [0.0, 5.0]])
        modes = np.array([["a", "x"], ["b", "z-rare"], ["c", "x"]], dtype=object)
        stats = blocks.statistics(centres, modes, 0.7)
    finally:
        blocks.unpersist()
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", batch)
    d = kprototypes_cost(pdf, centres, modes, 0.7)
    nearest = d.argmin(axis=1)
    assert stats.cost == pytest.approx(d.min(axis=1).sum(), rel=1e-12)
    assert stats.sizes.tolist() == np.bincount(nearest, minlength=3).tolist()
    np.testing.assert_allclose(stats.sums, pdf[NUM].groupby(nearest).sum().to_numpy(), rtol=1e-12)
    expected = [
        pd.crosstab(nearest, pdf[c].to_numpy()).reindex(index=range(3), columns=v, fill_value=0)
        for c, v in zip(CAT, blocks.vocab, strict=True)
    ]
    np.testing.assert_array_equal(stats.tallies, np.hstack([e.to_numpy() for e in expected]))
    ids = spark.range(MAX_CATEGORY_VALUES + 1).select(
        F.col("id").cast("double").alias("u"), F.col("id").cast("string").alias("p")
    )
    with pytest.raises(ValueError, match=r"more than 100000 distinct categorical values in \['p'\]"):
        ColumnBlocks(ids, ["u"], ["p"])


def test_fit_subsets_equals_a_fit_of_each_subset(spark: SparkSession) -> None:
    """Three subsets fitted in the same passes (from one explicit start, and by k-means||
    with two starts each) give what fitting each subset on its own gives."""
    pdf = pd.concat([blobs(150, seed=s).assign(part=s) for s in range(3)], ignore_index=True)
    df = spark.createDataFrame(pdf).cache()
    start = [[0.0, 0.0, "a", "x"], [4.0, 4.0, "b", "y"], [0.0, 5.0, "c", "x"]]
    for params in ({"initialCentres": start}, {"initMode": "k-means||", "seed": 7, "nInit": 2}):
        estimator = KPrototypes(k=3, numericCols=NUM, categoricalCols=CAT, gamma=0.6, tol=0.0, **params)
        together = estimator.fitSubsets(df, "part", 3)
        for part, model in enumerate(together):
            alone = estimator.copy({estimator.seed: estimator.getSeed() + part}).fit(
                df.where(F.col("part") == part)
            )
            assert model.summary.n == 150
            if "initialCentres" in params:  # the same start: the same iterations
                np.testing.assert_allclose(model.clusterCenters(), alone.clusterCenters(), rtol=1e-12)
                assert model.clusterModes() == alone.clusterModes()
            # either way a fixed point of its own subset: its cost is that of its prototypes
            rows = df.where(F.col("part") == part)
            assert model.summary.trainingCost == pytest.approx(model.computeCost(rows), rel=1e-9)
            assert model.summary.trainingCost <= 1.05 * alone.summary.trainingCost
    with pytest.raises(ValueError, match="outside 0..1"):
        KPrototypes(k=2, numericCols=NUM, categoricalCols=CAT).fitSubsets(df, "part", 2)


def test_scaler_and_kprototypes_pipeline_save_and_load(spark: SparkSession, tmp_path: Path) -> None:
    rng = np.random.RandomState(1)
    pdf = pd.DataFrame(
        {
            "id": np.arange(200),
            "spend": np.concatenate([rng.lognormal(2, 0.5, 100), rng.lognormal(7, 0.5, 100)]),
            "margin": rng.normal(0, 50, 200),
            "plan": rng.choice(["basic", "pro"], 200),
        }
    )
    df = spark.createDataFrame(pdf)
    pipeline = Pipeline(
        stages=[
            LogStandardScaler(
                inputCols=["spend", "margin"], outputCols=["z_spend", "z_margin"], logCols=["spend", "margin"]
            ),
            KPrototypes(
                k=2,
                numericCols=["z_spend"],
                categoricalCols=["plan"],
                seed=7,
                initMode="k-means||",
            ),
        ]
    )
    fitted = pipeline.fit(df)
    scaler = fitted.stages[0]
    logged = np.sign(pdf[["spend", "margin"]]) * np.log1p(np.abs(pdf[["spend", "margin"]]))
    np.testing.assert_allclose(scaler.means, logged.mean().to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(scaler.stds, logged.std(ddof=0).to_numpy(), rtol=1e-9)

    fitted.write().overwrite().save(str(tmp_path / "model"))
    loaded = PipelineModel.load(str(tmp_path / "model"))
    model, again = fitted.stages[1], loaded.stages[1]
    assert isinstance(again, KPrototypesModel)
    assert again.clusterModes() == model.clusterModes() and again.gamma == model.gamma
    np.testing.assert_allclose(np.array(again.clusterCenters()), np.array(model.clusterCenters()), rtol=0)
    assert again.summary.trainingCost == model.summary.trainingCost and again.getK() == 2
    before = fitted.transform(df).select("id", "segment", "z_spend").orderBy("id").toPandas()
    after = loaded.transform(df).select("id", "segment", "z_spend").orderBy("id").toPandas()
    pd.testing.assert_frame_equal(before, after)
    # the two spend populations (100x apart) are what the scaled clustering separates
    assert adjusted_rand_score(np.repeat([0, 1], 100), before["segment"]) > 0.9

    named = again.setSegmentNames(["first", "second"])
    out = (
        named.transform(loaded.stages[0].transform(df)).select("segment", "segment_name").distinct().collect()
    )
    assert {(r.segment, r.segment_name) for r in out} == {(0, "first"), (1, "second")}


def test_silhouette_matches_sklearn_on_the_mixed_dissimilarity() -> None:
    rng = np.random.RandomState(4)
    x_num = rng.randn(60, 3)
    x_cat = rng.randint(0, 3, (60, 2))
    gamma = 0.8
    distance = mixed_dissimilarity_matrix(x_num, x_cat, gamma)
    expected = cdist(x_num, x_num, "sqeuclidean") + gamma * cdist(x_cat, x_cat, "hamming") * 2
    np.testing.assert_allclose(distance, expected, atol=1e-9)
    labels = rng.randint(0, 4, 60)
    labels[7] = 9  # a cluster of one point scores 0, as in sklearn
    ours = silhouette_samples(distance, labels)
    assert ours.mean() == pytest.approx(silhouette_score(expected, labels, metric="precomputed"), abs=1e-9)
    assert ours[7] == 0.0


def test_jaccard_and_ari_from_spark_contingency_tables(spark: SparkSession) -> None:
    # original clusters 0 (6 rows), 1 (4 rows); the bootstrap clustering splits cluster 0
    original = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    boot = [0, 0, 0, 2, 2, 2, 1, 1, 1, 1]
    df = spark.createDataFrame(list(zip(original, boot, strict=True)), "o int, b int")
    table = contingency(df, "o", "b", 2, 3)
    np.testing.assert_array_equal(table, [[3, 0, 3], [0, 4, 0]])
    # one table per group, from one job: group 1 holds the last four rows only
    groups = [int(i >= 6) for i in range(len(original))]
    grouped = spark.createDataFrame(list(zip(original, boot, groups, strict=True)), "o int, b int, g int")
    tables = contingency(grouped, "o", "b", 2, 3, by="g", n_by=2)
    np.testing.assert_array_equal(tables, [[[3, 0, 3], [0, 0, 0]], [[0, 0, 0], [0, 4, 0]]])
    # cluster 0: best match 3 / (6 + 3 - 3) = 0.5; cluster 1: 4 / 4 = 1
    np.testing.assert_allclose(best_jaccard(table), [0.5, 1.0])
    assert adjusted_rand_index(table) == pytest.approx(adjusted_rand_score(original, boot), abs=1e-12)
    stability = Stability(
        jaccard=np.array([[0.5, 1.0], [0.7, 0.9], [0.55, 0.8]]), ari=np.array([0.5, 0.6, 0.7])
    )
    verdicts = stability.per_cluster(unstable_below=0.6, stable_from=0.75)
    assert verdicts["verdict"].tolist() == ["unstable", "stable"]
    assert verdicts["dissolved"].tolist() == [1, 0] and verdicts["recovered"].tolist() == [0, 3]


def test_bootstrap_finds_the_unstable_cluster(spark: SparkSession) -> None:
    """A tight far blob is a real cluster; k = 3 must cut a round cloud in two, and where it
    cuts changes from resample to resample: those halves are not stable."""
    rng = np.random.RandomState(2)
    # a disk as evenly spaced rings: every direction of the cut is as good as any other
    rings = [
        (r, np.arange(int(round(2 * np.pi * r / 0.55))) * 2 * np.pi / round(2 * np.pi * r / 0.55))
        for r in np.arange(0.5, 3.01, 0.5)
    ]
    cloud = np.vstack([np.c_[r * np.cos(a), r * np.sin(a)] for r, a in rings])
    blob = rng.randn(80, 2) * 0.3 + [20, 20]
    pdf = pd.DataFrame(np.vstack([cloud, blob]), columns=NUM)
    df = spark.createDataFrame(pdf).cache()
    estimator = KPrototypes(k=3, numericCols=NUM, initMode="k-means||", seed=11)
    labelled = estimator.fit(df).transform(df).withColumnRenamed("segment", "orig").cache()
    blob_cluster = labelled.where(F.col("u") > 10).select("orig").first()[0]
    stability = bootstrap_stability(labelled, "orig", 3, estimator, resamples=6, seed=100)
    table = stability.per_cluster(unstable_below=0.6, stable_from=0.75).set_index("cluster")
    assert table.loc[blob_cluster, "verdict"] == "stable" and table.loc[blob_cluster, "jaccard_mean"] > 0.95
    halves = table.drop(index=blob_cluster)
    assert (halves["verdict"] != "stable").all(), table
    assert halves["jaccard_mean"].min() < 0.75 and stability.ari.shape == (6,)


def test_outliers_and_names_come_from_profiles() -> None:
    centres = np.array([[0.2, -0.1], [1.0, 0.5], [9.0, -0.3], [0.1, 5.0]])
    # cluster 2 is tiny and extreme; cluster 3 is extreme but too big to be an outlier
    assert outlier_clusters([500, 400, 3, 97], centres, max_share=0.01, min_z=4.0) == [
        False,
        False,
        True,
        False,
    ]
    # a tiny cluster 4 deviations below the mean sits at the measure's floor (no usage): kept
    floors = [-4.1, -2.0]
    at_floor = np.array([[0.2, -0.1], [-4.1, 0.0], [9.0, -0.3]])
    assert outlier_clusters([500, 3, 3], at_floor, max_share=0.01, min_z=4.0, floors=floors) == [
        False,
        False,
        True,
    ]
    assert outlier_clusters([500, 3, 3], at_floor, max_share=0.01, min_z=4.0) == [False, True, True]
    profiles = pd.DataFrame(
        {
            "cluster": [0, 1, 2, 3],
            "customers": [100, 300, 200, 3],
            "profit_365d": [600.0, 40.0, -25.0, 0.0],
            "active_days_365d": [200.0, 90.0, 10.0, 5.0],
            "cost_to_serve_365d": [50.0, 20.0, 90.0, 0.0],
            "is_outlier": [False, False, False, True],
        }
    )
    kwargs = {"value_col": "profit_365d", "engagement_col": "active_days_365d"}
    names = segment_names(profiles, cost_col="cost_to_serve_365d", **kwargs)
    # mean cost 47.8 per business customer: cluster 2's 90 is above 1.5 x that
    assert names == {
        0: "High-value engaged",
        1: "Mid-value casual",
        2: "Low-value dormant, costly to serve, loss-making",
        3: OUTLIER,
    }
    assert segment_names(profiles, cost_col="cost_to_serve_365d", costly_ratio=2.0, **kwargs)[2] == (
        "Low-value dormant, loss-making"
    )
    # the names follow the profiles, not the ids
    shuffled = profiles.assign(cluster=[3, 0, 1, 2])
    assert segment_names(shuffled, cost_col="cost_to_serve_365d", **kwargs) == {
        3: "High-value engaged",
        0: "Mid-value casual",
        1: "Low-value dormant, costly to serve, loss-making",
        2: OUTLIER,
    }
    # equal profiles still get distinct names, with no number appended
    twins = pd.concat([profiles.iloc[:2], profiles.iloc[1:2].assign(cluster=5)]).assign(is_outlier=False)
    twin_names = segment_names(twins, **kwargs)
    assert len(set(twin_names.values())) == 3 and not any(n[-1].isdigit() for n in twin_names.values())


def tier_order_agrees(named: pd.DataFrame, value_col: str) -> bool:
    """``named`` has one row per business segment with ``name`` and the mean ``value_col``:
    read from the most valuable down, the tier words are the tier list in its order."""
    words = tiers(len(named))
    ordered = named.sort_values(value_col, ascending=False)["name"]
    positions = [next(i for i, w in enumerate(words) if name.startswith(w + " ")) for name in ordered]
    return positions == sorted(positions) and len(set(positions)) == len(positions)


def test_value_by_cluster_and_effect_sizes_against_pandas(spark: SparkSession) -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "segment": np.repeat([0, 1, 2], [400, 300, 300]),
            "profit": np.concatenate(
                [rng.normal(100, 40, 400), rng.normal(60, 30, 300), rng.normal(58, 30, 300)]
            ),
        }
    )
    frame.loc[5, "profit"] = None  # a null counts as 0
    table = value_by_cluster(spark.createDataFrame(frame), "segment", "profit")
    values = frame.assign(profit=frame["profit"].fillna(0.0)).groupby("segment")["profit"]
    np.testing.assert_allclose(table["mean"], values.mean(), rtol=1e-12)
    np.testing.assert_allclose(table["sd"], values.std(ddof=0), rtol=1e-9)
    np.testing.assert_allclose(
        table["hi"] - table["mean"], 1.96 * values.std(ddof=0) / np.sqrt(values.size())
    )
    # by hand: clusters 1 and 2 are nearly the same value, 0 is far from both
    d12 = (table["mean"][1] - table["mean"][2]) / np.sqrt((table["sd"][1] ** 2 + table["sd"][2] ** 2) / 2)
    effect, overlap = smallest_value_effect(table)
    assert effect == pytest.approx(abs(d12)) and effect < 0.5 and overlap
    effect, overlap = smallest_value_effect(table.iloc[:2])
    assert effect > 1.0 and not overlap


def test_cramers_v_against_scipy_and_its_interval() -> None:
    rng = np.random.default_rng(11)
    personas = rng.integers(0, 9, 5000)
    segments = np.where(rng.random(5000) < 0.3, personas % 4, rng.integers(0, 4, 5000))  # partly tied
    table = pd.crosstab(personas, segments).to_numpy()
    v, lo, hi = cramers_v_interval(table, resamples=400, seed=1)
    assert v == pytest.approx(association(table, method="cramer"), rel=1e-12)
    assert lo < v < hi and hi - lo < 0.1
    independent = pd.crosstab(rng.integers(0, 9, 5000), rng.integers(0, 4, 5000)).to_numpy()
    assert cramers_v(independent) < lo  # no tie: far below the tied table's interval
    assert cramers_v(np.array([[5, 0], [0, 7]])) == pytest.approx(1.0)


@pytest.mark.parametrize("m", [2, 3, 4, 5, 6, 7, 9])
def test_value_tiers_follow_the_value_figure(m: int) -> None:
    """For any profiles, the tier words read in value order are the tier list in order:
    the name never disagrees with the figure printed beside it."""
    rng = np.random.default_rng(m)
    profiles = pd.DataFrame(
        {
            "cluster": rng.permutation(m),
            "customers": rng.integers(10, 1000, m),
            "profit_365d": rng.normal(100, 300, m),
            "active_days_365d": rng.uniform(0, 300, m),
            "cost_to_serve_365d": rng.uniform(0, 100, m),
            "is_outlier": False,
        }
    )
    names = segment_names(
        profiles, value_col="profit_365d", engagement_col="active_days_365d", cost_col="cost_to_serve_365d"
    )
    assert tier_order_agrees(profiles.assign(name=profiles["cluster"].map(names)), "profit_365d")
    assert len(set(names.values())) == m


def test_segment_stage_and_scoring_on_the_tiny_preset(
    spark: SparkSession, tiny_world: GeneratedWorld, tmp_path: Path
) -> None:
    """The stage on features built from the tiny preset (true identity map): bots found as
    outliers, every table written, the chosen pipeline registered as champion; scoring
    loads it by alias and gives every snapshot the stage's assignment."""
    cfg = load_config(
        TEST_CONF,
        overrides=[
            *temp_overrides(tmp_path),
            "segment.k_min=3",
            "segment.k_max=4",
            "segment.bootstrap_resamples=2",
            "segment.comparators=[kmeans]",
            "segment.comparator_rows=1000",
        ],
    )
    world = tiny_world
    events = world.customer_tables()
    imap = world.identity_records.select(
        "source_system", "source_id", F.col("person_id").cast("string").alias("customer_id")
    )
    fc = cfg.features
    features = build_feature_snapshots(
        events["transactions"],
        imap,
        support=events["support_contacts"],
        usage=events["product_usage"],
        touches=events["marketing_touches"],
        attributes=events["customer_attributes"],
        snapshot_dates=["2026-10-01", "2026-11-01"],
        spec=FeatureSpec.of(fc),
    )
    store = TableStore(spark, cfg.storage.warehouse, run_id="seed")
    store.write(features, "gold.customer_features")
    truth = world.people.select(
        F.col("person_id").cast("string").alias("customer_id"), "segment", "is_bot"
    ).toPandas()

    run = run_stage(cfg, "segment", run_id="seg-test")
    assignments = (
        store.read("gold.segment_assignments")
        .toPandas()
        .merge(truth.rename(columns={"segment": "latent"}), on="customer_id")
    )
    assert str(assignments["snapshot_date"].max()) == "2026-11-01"
    bots = assignments[assignments["is_bot"]]
    assert len(bots) >= 3 and bots["is_outlier"].mean() >= 0.9
    assert assignments.loc[~assignments["is_bot"], "is_outlier"].sum() <= 0.01 * len(assignments)
    business = assignments[~assignments["is_outlier"] & ~assignments["is_bot"]]
    assert business["segment_name"].nunique() == run.metrics["chosen_k"]
    assert adjusted_rand_score(business["latent"], business["segment_name"]) > 0.3
    assert not assignments["segment_name"].str.match(r"^\d+$").any()
    # the tiers follow the mean 12-month profit per customer of each segment, from pandas
    latest = features.where(F.col("snapshot_date") == "2026-11-01").select("customer_id", "profit_365d")
    named = (
        assignments[~assignments["is_outlier"]]
        .merge(latest.toPandas(), on="customer_id")
        .groupby("segment_name", as_index=False)["profit_365d"]
        .mean()
        .rename(columns={"segment_name": "name"})
    )
    assert tier_order_agrees(named, "profit_365d"), named

    selection = store.read("gold.segment_model_selection").toPandas()
    assert set(selection["algorithm"]) == {"kprototypes", "kmeans"} and set(selection["k"]) == {3, 4}
    chosen = selection[selection["chosen"]]
    assert len(chosen) == 1 and chosen["algorithm"].iloc[0] == "kprototypes"
    assert chosen["k"].iloc[0] == run.metrics["chosen_k"] and (selection["rule"] == "distinct_stable").all()
    kp = selection[selection["algorithm"] == "kprototypes"]
    # the rule: the largest k that is stable, economically distinct and within 0.95 of the best
    # silhouette; else the best silhouette among the stable k, else the best silhouette
    stable = kp["all_stable"].astype(bool)
    near_best = kp["silhouette"] >= 0.95 * kp["silhouette"].max()
    eligible = stable & kp["economically_distinct"].astype(bool) & near_best
    if eligible.any():
        assert chosen["k"].iloc[0] == kp.loc[eligible, "k"].max()
    elif stable.any():
        assert chosen["silhouette"].iloc[0] == kp.loc[stable, "silhouette"].max()
    else:
        assert chosen["silhouette"].iloc[0] == kp["silhouette"].max()
    mlflow.set_tracking_uri(cfg.tracking.uri)
    comparator = MlflowClient().search_runs(
        [mlflow.get_experiment_by_name(cfg.tracking.experiment).experiment_id],
        filter_string="tags.`custseg.candidate` = 'kmeans k=3'",
    )[0]
    assert 800 < int(comparator.data.params["fit_rows"]) < 1200  # fitted on the seeded sample
    stability = store.read("gold.segment_stability").toPandas()
    assert set(stability["k"]) == {3, 4} and stability["jaccard_mean"].between(0, 1).all()
    crosstab = store.read("gold.segment_persona_crosstab").toPandas()
    assert crosstab["customers"].sum() == len(assignments)
    personas = features.where(F.col("snapshot_date") == "2026-11-01").select("customer_id", "legacy_persona")
    by_hand = pd.crosstab(
        assignments.merge(personas.toPandas(), on="customer_id")["legacy_persona"].fillna("unknown"),
        assignments.merge(personas.toPandas(), on="customer_id")["segment_name"],
    )
    persona = store.read("gold.segment_persona_association").first()
    assert persona["cramers_v"] == pytest.approx(association(by_hand.to_numpy(), method="cramer"), rel=1e-9)
    assert persona["cramers_v_lo"] <= persona["cramers_v"] <= persona["cramers_v_hi"]
    assert run.metrics["persona_cramers_v"] == pytest.approx(persona["cramers_v"])
    for frame in (assignments, selection, stability, crosstab):
        assert not {"email", "first_name", "last_name", "phone", "address", "date_of_birth"} & set(
            frame.columns
        )

    model, version = load_registered_spark_model(cfg, "custseg-segmentation", "champion")
    assert version == "1" and isinstance(model.stages[-1], KPrototypesModel)
    run_stage(cfg, "score", run_id="seg-test")
    scored = store.read("gold.segment_snapshots").toPandas()
    assert len(scored) == store.read("gold.customer_features").count()
    latest = scored[scored["snapshot_date"].astype(str) == "2026-11-01"].merge(
        assignments[["customer_id", "segment_name"]], on="customer_id", suffixes=("", "_stage")
    )
    assert (latest["segment_name"] == latest["segment_name_stage"]).all() and (
        scored["model_version"] == "1"
    ).all()
