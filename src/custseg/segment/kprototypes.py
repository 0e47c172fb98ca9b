"""k-prototypes (Huang 1998) as a pyspark.ml Estimator.

Cost of a point against a prototype: squared Euclidean distance over the numeric columns
plus ``gamma`` times the number of categorical columns that differ from the prototype's
mode, the kmodes package's definition. Written by hand: neither MLlib nor any Spark
library clusters mixed numeric and categorical data.

Every iteration is one pass over the input, cached once as columnar numpy blocks
(``custseg.segment.blocks``): each partition assigns its rows to the nearest prototype and
returns its per-cluster row counts, numeric sums, category tallies and cost as one row,
so only k-sized results reach the driver and the plan is the same every pass (no lineage
builds up, nothing is recompiled). Modes break ties to the smallest value, as kmodes.
The final assignment (``transform``, ``computeCost``) is a SQL expression with the
prototypes as literals, the same dissimilarity in the same order of terms. The update
is batch (Lloyd's): kmodes moves prototypes after every point, which cannot be
distributed; both stop at a fixed point of the same map, so on the same data and start
they agree where the fixed point is reached (tested against kmodes).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import reduce
from typing import Any

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasMaxIter, HasPredictionCol, HasSeed, HasTol
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.storagelevel import StorageLevel

from custseg.sampling import hash_order
from custseg.segment.blocks import (
    MAX_CATEGORY_VALUES,
    ColumnBlocks,
    PassStatistics,
    block_dissimilarity,
    encode_categories,
    too_many_values,
)
from custseg.segment.persist import ModelDataPersistence

log = logging.getLogger(__name__)

INIT_MODES = ("cao", "huang", "k-means||", "random")


# --- mixed dissimilarity: Spark columns and numpy, the same definition -------------------


def _total(terms: Sequence[Column]) -> Column:
    return reduce(lambda a, b: a + b, terms) if terms else F.lit(0.0)


def _name(column: str) -> str:
    return "`" + column.replace("`", "``") + "`"


def _double(value: float) -> str:
    return f"({float(value)!r}D)"


def _string(value: str) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def dissimilarity_sql(
    numeric: Sequence[str],
    categorical: Sequence[str],
    centres: Sequence[Sequence[float]],
    modes: Sequence[Sequence[str]],
    gamma: float,
) -> list[str]:
    """One SQL expression per prototype: squared Euclidean + gamma x categorical mismatches.

    Built as SQL text, parsed once by Spark: the same expression built from Python Column
    objects costs one py4j call per node (k x columns x ~6), which at k = 12 took longer
    than the pass over the data itself.
    """
    out = []
    for centre, mode in zip(centres, modes, strict=True):
        squares = [
            f"({_name(c)} - {_double(v)}) * ({_name(c)} - {_double(v)})"
            for c, v in zip(numeric, centre, strict=True)
        ]
        mismatches = [
            f"(CASE WHEN {_name(c)} = {_string(v)} THEN 0.0D ELSE 1.0D END)"
            for c, v in zip(categorical, mode, strict=True)
        ]
        num = " + ".join(squares) or "0.0D"
        cat = " + ".join(mismatches) or "0.0D"
        out.append(f"(({num}) + {_double(gamma)} * ({cat}))")
    return out


def dissimilarity_columns(
    numeric: Sequence[str],
    categorical: Sequence[str],
    centres: Sequence[Sequence[float]],
    modes: Sequence[Sequence[str]],
    gamma: float,
) -> list[Column]:
    """``dissimilarity_sql`` as columns, one per prototype."""
    return [F.expr(sql) for sql in dissimilarity_sql(numeric, categorical, centres, modes, gamma)]


def with_nearest(df: DataFrame, distances: Sequence[str], j_col: str, d_col: str | None = None) -> DataFrame:
    """``df`` plus the nearest prototype's index (and its dissimilarity), from
    ``dissimilarity_sql``; equal distances go to the lowest index (np.argmin's rule).

    Plain ``least`` and ``CASE`` over the k distance columns: no per-row array or struct
    is built, so the whole pass stays in generated code.
    """
    tmp = [f"__kp_d{j}" for j in range(len(distances))]
    out = df.select("*", *[F.expr(d).alias(t) for d, t in zip(distances, tmp, strict=True)])
    out = out.withColumn("__kp_min", F.expr(f"least({', '.join(tmp)})") if len(tmp) > 1 else F.col(tmp[0]))
    case = "CASE " + " ".join(f"WHEN {t} = __kp_min THEN {j}" for j, t in enumerate(tmp)) + " END"
    out = out.withColumn(j_col, F.expr(case))
    if d_col:
        out = out.withColumn(d_col, F.col("__kp_min"))
    return out.drop(*tmp, "__kp_min")


def local_dissimilarity(
    x_num: np.ndarray, x_cat: np.ndarray, centres: np.ndarray, modes: np.ndarray, gamma: float
) -> np.ndarray:
    """n x k matrix of the same dissimilarity on the driver, rows as matrix rows
    (categoricals as int codes): the blocks' function, so the terms add up in the same
    order on the driver, on the executors and in the SQL expression."""
    return block_dissimilarity(x_num.T, x_cat.T, centres, modes, gamma)


# --- params -----------------------------------------------------------------------------


class _KPrototypesParams(HasPredictionCol, HasMaxIter, HasTol, HasSeed):
    k: Param[int] = Param(Params._dummy(), "k", "number of clusters (> 1)", TypeConverters.toInt)
    numericCols: Param[list[str]] = Param(
        Params._dummy(), "numericCols", "numeric input columns (already scaled)", TypeConverters.toListString
    )
    categoricalCols: Param[list[str]] = Param(
        Params._dummy(), "categoricalCols", "categorical input columns", TypeConverters.toListString
    )
    gamma: Param[float] = Param(
        Params._dummy(),
        "gamma",
        "weight of one categorical mismatch; unset: 0.5 x mean standard deviation of the numeric columns",
        TypeConverters.toFloat,
    )
    initMode: Param[str] = Param(
        Params._dummy(), "initMode", f"initialisation: one of {INIT_MODES}", TypeConverters.toString
    )
    initSteps: Param[int] = Param(
        Params._dummy(), "initSteps", "rounds of k-means|| sampling (> 0)", TypeConverters.toInt
    )
    nInit: Param[int] = Param(
        Params._dummy(),
        "nInit",
        "starts from seeds seed, seed + 1, ...; the lowest training cost is kept (kmodes' n_init)",
        TypeConverters.toInt,
    )
    initialCentres: Param[list[list[Any]]] = Param(
        Params._dummy(),
        "initialCentres",
        "explicit start: k lists [numeric values..., categorical values...] (overrides initMode)",
        TypeConverters.identity,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(
            k=4,
            numericCols=[],
            categoricalCols=[],
            initMode="cao",
            initSteps=2,
            nInit=1,
            maxIter=100,
            tol=1e-4,
            predictionCol="segment",
        )

    def getK(self) -> int:
        return self.getOrDefault(self.k)

    def getNumericCols(self) -> list[str]:
        return self.getOrDefault(self.numericCols)

    def getCategoricalCols(self) -> list[str]:
        return self.getOrDefault(self.categoricalCols)

    def getInitMode(self) -> str:
        return self.getOrDefault(self.initMode)


# --- estimator --------------------------------------------------------------------------


class KPrototypes(Estimator["KPrototypesModel"], _KPrototypesParams, ModelDataPersistence):
    """k-prototypes clustering of mixed numeric and categorical columns.

    >>> kp = KPrototypes(k=4, numericCols=["z_monetary"], categoricalCols=["plan"], seed=1)
    >>> model = kp.fit(df)            # doctest: +SKIP
    >>> model.transform(df)           # adds the ``segment`` column  # doctest: +SKIP
    """

    _input_kwargs: dict[str, Any]

    @keyword_only
    def __init__(
        self,
        *,
        k: int = 4,
        numericCols: Sequence[str] = (),
        categoricalCols: Sequence[str] = (),
        gamma: float | None = None,
        initMode: str = "cao",
        initSteps: int = 2,
        nInit: int = 1,
        initialCentres: list[list[Any]] | None = None,
        maxIter: int = 100,
        tol: float = 1e-4,
        seed: int | None = None,
        predictionCol: str = "segment",
    ) -> None:
        super().__init__()
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        k: int = 4,
        numericCols: Sequence[str] = (),
        categoricalCols: Sequence[str] = (),
        gamma: float | None = None,
        initMode: str = "cao",
        initSteps: int = 2,
        nInit: int = 1,
        initialCentres: list[list[Any]] | None = None,
        maxIter: int = 100,
        tol: float = 1e-4,
        seed: int | None = None,
        predictionCol: str = "segment",
    ) -> KPrototypes:
        kwargs = {k_: v for k_, v in self._input_kwargs.items() if v is not None}
        for name in ("numericCols", "categoricalCols"):
            if name in kwargs:
                kwargs[name] = list(kwargs[name])
        return self._set(**kwargs)

    def setK(self, value: int) -> KPrototypes:
        return self._set(k=value)

    def setSeed(self, value: int) -> KPrototypes:
        return self._set(seed=value)

    def setInitMode(self, value: str) -> KPrototypes:
        return self._set(initMode=value)

    def setNInit(self, value: int) -> KPrototypes:
        return self._set(nInit=value)

    def setInitialCentres(self, value: list[list[Any]]) -> KPrototypes:
        return self._set(initialCentres=value)

    def setGamma(self, value: float) -> KPrototypes:
        return self._set(gamma=value)

    def _validate(self, dataset: DataFrame) -> tuple[list[str], list[str], int]:
        numeric, categorical, k = self.getNumericCols(), self.getCategoricalCols(), self.getK()
        if k < 2:
            raise ValueError(f"KPrototypes: k must be at least 2, got {k}")
        if not numeric and not categorical:
            raise ValueError("KPrototypes: give numericCols and/or categoricalCols")
        missing = [c for c in (*numeric, *categorical) if c not in dataset.columns]
        if missing:
            raise ValueError(f"KPrototypes: input has no column(s) {missing}; it has {dataset.columns}")
        if self.getOrDefault(self.nInit) < 1:
            raise ValueError(f"KPrototypes: nInit must be at least 1, got {self.getOrDefault(self.nInit)}")
        if self.getInitMode() not in INIT_MODES:
            raise ValueError(f"KPrototypes: initMode must be one of {INIT_MODES}, got {self.getInitMode()!r}")
        return list(numeric), list(categorical), k

    def _fit(self, dataset: DataFrame) -> KPrototypesModel:
        return self._fit_blocks(dataset, None, 0)[0]

    def fitSubsets(self, dataset: DataFrame, subsetCol: str, subsets: int) -> list[KPrototypesModel]:
        """One model per subset 0..subsets-1 of ``dataset`` (its rows with that value of
        ``subsetCol``), all fitted in the same passes over one set of cached blocks: with
        small subsets (bootstrap resamples) a pass costs about the same for one or for
        several, so B refits cost about the passes of one. Subset b starts from seed
        ``seed + b`` (with ``nInit``: seed + b, seed + b + 1, ...), as ``copy({seed: seed +
        b}).fit`` on that subset would. An unset gamma comes from all rows' stds."""
        if subsetCol not in dataset.columns:
            raise ValueError(f"KPrototypes: input has no column {subsetCol!r}; it has {dataset.columns}")
        if subsets < 1:
            raise ValueError(f"KPrototypes: subsets must be at least 1, got {subsets}")
        return self._fit_blocks(dataset, subsetCol, subsets)

    def _fit_blocks(self, dataset: DataFrame, subset_col: str | None, subsets: int) -> list[KPrototypesModel]:
        """The best model of every subset (one model, of all rows, without ``subset_col``)."""
        numeric, categorical, k = self._validate(dataset)
        data = dataset.select(
            *[F.col(c).cast("double").alias(c) for c in numeric],
            *[F.col(c).cast("string").alias(c) for c in categorical],
            *([F.col(subset_col).cast("int").alias(subset_col)] if subset_col else []),
        )
        # the blocks read the input once (encoded and profiled in one job); Cao, Huang and
        # random starts read it again per start: cached here for those, unless the caller
        # has cached it already (then a second copy costs a full pass and memory for nothing)
        rereads = not self._explicit_start() and self.getInitMode() != "k-means||"
        own_cache = rereads and not (dataset.storageLevel.useMemory or dataset.storageLevel.useDisk)
        if own_cache:
            data = data.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            # one job: encoded and profiled
            blocks = ColumnBlocks(data, numeric, categorical, subset_col=subset_col, subsets=subsets)
            try:
                sizes = blocks.subset_sizes if subset_col else [blocks.n]
                for part, size in enumerate(sizes):
                    if size < k:
                        where = f" in subset {part}" if subset_col else ""
                        raise ValueError(f"KPrototypes: {size} rows{where} cannot make {k} clusters")
                gamma = self.getOrDefault(self.gamma) if self.isDefined(self.gamma) else None
                if gamma is None:
                    gamma = mixed_gamma(blocks.std)
                return self._best_of_starts(data, blocks, k, float(gamma))
            finally:
                blocks.unpersist()
        finally:
            if own_cache:
                data.unpersist()

    def _explicit_start(self) -> bool:
        return self.isDefined(self.initialCentres) and bool(self.getOrDefault(self.initialCentres))

    def _best_of_starts(
        self, data: DataFrame, blocks: ColumnBlocks, k: int, gamma: float
    ) -> list[KPrototypesModel]:
        """``nInit`` starts per subset (seeds seed + b, seed + b + 1, ... for subset b; one
        with ``initialCentres``); per subset the model of lowest training cost is kept, as
        kmodes' n_init does. The starts iterate side by side: each pass over the data
        serves every start not yet converged (a pass costs about the same for one start or
        a few), and k-means|| draws all starts in the same passes."""
        explicit = self._explicit_start()
        seed = self.getOrDefault(self.seed)
        parts: list[int | None] = list(range(blocks.subsets)) if blocks.subset_col else [None]
        tries = 1 if explicit else self.getOrDefault(self.nInit)
        plan = [(part, seed + (part or 0) + s) for part in parts for s in range(tries)]
        if not explicit and self.getInitMode() == "k-means||":
            log.info("KPrototypes: k-means|| initialisation of %d prototypes, %d start(s)", k, len(plan))
            starts = init_kmeans_parallel_starts(
                blocks,
                k,
                gamma,
                [s for _, s in plan],
                self.getOrDefault(self.initSteps),
                subsets=[part for part, _ in plan],
            )
        else:
            starts = [
                self._initial(
                    data if part is None else data.where(F.col(str(blocks.subset_col)) == part),
                    blocks,
                    k,
                    gamma,
                    s,
                )
                for part, s in plan
            ]
        models = self._iterate(blocks, starts, gamma, [part for part, _ in plan])
        best = []
        for part in parts:
            mine = [m for (p, _), m in zip(plan, models, strict=True) if p == part]
            if len(mine) > 1:
                log.info(
                    "KPrototypes: %d starts%s, costs %s; the lowest is kept",
                    len(mine),
                    "" if part is None else f" of subset {part}",
                    [f"{m.summary.trainingCost:.8g}" for m in mine],
                )
            best.append(min(mine, key=lambda m: m.summary.trainingCost))
        return best

    def _initial(
        self, data: DataFrame, blocks: ColumnBlocks, k: int, gamma: float, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The explicit start, or one Cao, Huang or random start (k-means|| starts are drawn
        together in ``_best_of_starts``)."""
        numeric, categorical = blocks.numeric, blocks.categorical
        if self._explicit_start():
            given = self.getOrDefault(self.initialCentres)
            if len(given) != k or any(len(c) != len(numeric) + len(categorical) for c in given):
                raise ValueError(
                    f"KPrototypes: initialCentres needs {k} lists of {len(numeric)} numeric then "
                    f"{len(categorical)} categorical values"
                )
            centres = np.array([[float(v) for v in c[: len(numeric)]] for c in given], dtype=float)
            modes = np.array([[str(v) for v in c[len(numeric) :]] for c in given], dtype=object)
            return centres.reshape(k, len(numeric)), modes.reshape(k, len(categorical))
        mode = self.getInitMode()
        log.info("KPrototypes: %s initialisation of %d prototypes", mode, k)
        if mode == "random":
            picked = data.orderBy(hash_order([*numeric, *categorical], seed)).limit(k).collect()
            return _rows_as_prototypes(picked, numeric, categorical)
        if not categorical:
            raise ValueError(f"KPrototypes: initMode {mode!r} needs categorical columns; use 'k-means||'")
        if mode == "cao":
            return init_cao(data, numeric, categorical, k)
        return init_huang(data, numeric, categorical, k, seed)

    def _iterate(
        self,
        blocks: ColumnBlocks,
        starts: list[tuple[np.ndarray, np.ndarray]],
        gamma: float,
        subsets: list[int | None],
    ) -> list[KPrototypesModel]:
        """Lloyd iterations of every start (over the rows of its subset), one pass each
        round for the starts still moving."""
        max_iter, tol = self.getOrDefault(self.maxIter), self.getOrDefault(self.tol)
        runs = [_StartRun(centres, modes) for centres, modes in starts]
        for iteration in range(1, max_iter + 1):
            active = [(i, r) for i, r in enumerate(runs) if not r.converged]
            if not active:
                break
            stats = blocks.statistics_of_groups(
                [(r.centres, r.modes) for _, r in active], gamma, [subsets[i] for i, _ in active]
            )
            for (i, run), stat in zip(active, stats, strict=True):
                label = f" (start {i + 1})" if len(runs) > 1 else ""
                run.step(blocks, stat, tol, f"{iteration}{label}")
        models = []
        for run, part in zip(runs, subsets, strict=True):
            if not run.converged:
                log.warning("KPrototypes: not converged after maxIter=%d iterations", max_iter)
            model = KPrototypesModel(
                centres=run.centres.tolist(),
                modes=run.modes.tolist(),
                gamma=gamma,
                summary=KPrototypesSummary(
                    k=len(run.centres),
                    trainingCost=run.history[-1],
                    iterations=len(run.history),
                    converged=run.converged,
                    costHistory=run.history,
                    clusterSizes=run.sizes,
                    n=blocks.n if part is None else blocks.subset_sizes[part],
                ),
            )
            self._copyValues(model)
            models.append(model)
        return models


@dataclass(eq=False)
class _StartRun:
    """One start's prototypes and progress through the Lloyd iterations."""

    centres: np.ndarray
    modes: np.ndarray
    history: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    converged: bool = False

    def step(self, blocks: ColumnBlocks, stats: PassStatistics, tol: float, iteration: str) -> None:
        """Take one pass's statistics: record the cost, move to the means and modes, and
        stop when no prototype moved more than ``tol`` and no mode changed."""
        self.history.append(stats.cost)
        self.sizes = stats.sizes.tolist()
        new_centres, new_modes = _updated(blocks, stats, self.centres, self.modes)
        moved = np.sqrt(((new_centres - self.centres) ** 2).sum(axis=1))
        shift = float(moved.max()) if blocks.numeric else 0.0
        modes_changed = bool((new_modes != self.modes).any()) if blocks.categorical else False
        log.info(
            "KPrototypes iteration %s: cost %.6g, largest centre shift %.3g, modes changed %s, sizes %s",
            iteration,
            stats.cost,
            shift,
            modes_changed,
            self.sizes,
        )
        if shift <= tol and not modes_changed:
            self.converged = True
        else:
            self.centres, self.modes = new_centres, new_modes


def _updated(
    blocks: ColumnBlocks, stats: PassStatistics, centres: np.ndarray, modes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Means and modes of the non-empty clusters; an empty cluster keeps its prototype."""
    new_centres, new_modes = centres.copy(), modes.copy()
    fresh_modes = blocks.modes_from(stats.tallies)
    for j, size in enumerate(stats.sizes):
        if size == 0:
            log.warning("KPrototypes: cluster %d is empty; its prototype is kept", j)
            continue
        new_centres[j] = stats.sums[j] / size
        new_modes[j] = fresh_modes[j]
    return new_centres, new_modes


# --- initialisation ---------------------------------------------------------------------


def _rows_as_prototypes(
    rows: Sequence[Any], numeric: list[str], categorical: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    centres = np.array([[float(r[c]) for c in numeric] for r in rows], dtype=float).reshape(
        len(rows), len(numeric)
    )
    modes = np.array([[r[c] for c in categorical] for r in rows], dtype=object).reshape(
        len(rows), len(categorical)
    )
    return centres, modes


def category_frequencies(data: DataFrame, categorical: list[str]) -> list[dict[str, int]]:
    """Rows per value of every categorical column (one job; bounded by the vocabularies)."""
    pairs = F.explode(
        F.array(*[F.struct(F.lit(i).alias("a"), F.col(c).alias("v")) for i, c in enumerate(categorical)])
    )
    rows = (
        data.select(pairs.alias("p")).groupBy("p.a", "p.v").count().limit(MAX_CATEGORY_VALUES + 1).collect()
    )
    if len(rows) > MAX_CATEGORY_VALUES:
        raise ValueError(too_many_values(categorical))
    out: list[dict[str, int]] = [{} for _ in categorical]
    for r in rows:
        out[r["a"]][r["v"]] = int(r["count"])
    return out


def init_cao(
    data: DataFrame, numeric: list[str], categorical: list[str], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cao et al. (2009) on the categorical columns: density, then density x dissimilarity.

    Each step is a top-1 query over the data (no row is collected but the chosen one).
    Ties go to the smallest (categorical, numeric) values, where kmodes takes the first row
    in file order (a Spark table has none). The numeric part of each prototype is the
    chosen row's own values (kmodes draws it at random around the mean instead).
    """
    freqs = category_frequencies(data, categorical)
    n = sum(freqs[0].values())
    density = _total(
        [
            F.coalesce(
                F.create_map(*[x for v, cnt in f.items() for x in (F.lit(v), F.lit(float(cnt)))])[F.col(c)],
                F.lit(0.0),
            )
            for c, f in zip(categorical, freqs, strict=True)
        ]
    ) / F.lit(float(n) * len(categorical))
    scored = data.withColumn("_dens", density)
    order = [*[F.col(c) for c in categorical], *[F.col(c) for c in numeric]]
    chosen = [scored.orderBy(F.desc("_dens"), *order).limit(1).collect()[0]]
    while len(chosen) < k:
        mism = [
            _total([F.when(F.col(c) == F.lit(r[c]), 0.0).otherwise(1.0) for c in categorical]) for r in chosen
        ]
        score = F.col("_dens") * (F.least(*mism) if len(mism) > 1 else mism[0])
        chosen.append(
            scored.withColumn("_score", score).orderBy(F.desc("_score"), *order).limit(1).collect()[0]
        )
    return _rows_as_prototypes(chosen, numeric, categorical)


def init_huang(
    data: DataFrame, numeric: list[str], categorical: list[str], k: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Huang (1998): draw k value tuples by frequency, take the nearest row to each.

    The nearest rows come from one aggregation (``min_by`` per prototype, ties broken by a
    seeded hash). A row nearest to two draws is replaced by a seeded random row.
    """
    rng = np.random.RandomState(seed % 2**32)
    freqs = category_frequencies(data, categorical)
    draws = []
    for f in freqs:
        values, counts = list(f), np.array(list(f.values()), dtype=float)
        draws.append([values[i] for i in rng.choice(len(values), size=k, p=counts / counts.sum())])
    targets = [[draws[a][j] for a in range(len(categorical))] for j in range(k)]
    tiebreak = F.xxhash64(*[F.col(c) for c in (*numeric, *categorical)], F.lit(seed))
    row = F.struct(*[F.col(c) for c in (*numeric, *categorical)])
    picks = data.agg(
        *[
            F.min_by(row, F.struct(d.alias("d"), tiebreak.alias("t"))).alias(f"p{j}")
            for j, d in enumerate(dissimilarity_columns([], categorical, [[]] * k, targets, 1.0))
        ]
    ).first()
    assert picks is not None
    chosen: list[Any] = []
    for j in range(k):
        if picks[f"p{j}"] not in chosen:
            chosen.append(picks[f"p{j}"])
    if len(chosen) < k:
        log.info("KPrototypes Huang init: %d duplicate rows replaced by random rows", k - len(chosen))
        for r in data.orderBy(hash_order([*numeric, *categorical], seed)).limit(2 * k).collect():
            if len(chosen) < k and r not in chosen:
                chosen.append(r)
    return _rows_as_prototypes(chosen, numeric, categorical)


def init_kmeans_parallel(
    blocks: ColumnBlocks, k: int, gamma: float, seed: int, steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """k-means|| (Bahmani et al. 2012) with the mixed dissimilarity, as MLlib's KMeans does it.

    A seeded random first row, then ``steps`` rounds: one pass for the cost of the
    candidates so far, one drawing about 2k rows with probability proportional to their
    dissimilarity to the nearest candidate; then one pass counting the rows nearest each
    candidate. The weighted candidates (a few dozen) are reduced to k prototypes on the
    driver by weighted k-means++ and Lloyd iterations. Every pass runs over the cached
    blocks; only the drawn rows reach the driver.
    """
    return init_kmeans_parallel_starts(blocks, k, gamma, [seed], steps)[0]


def init_kmeans_parallel_starts(
    blocks: ColumnBlocks,
    k: int,
    gamma: float,
    seeds: Sequence[int],
    steps: int,
    subsets: Sequence[int | None] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``init_kmeans_parallel`` for several seeds in the same passes (one start each, from
    the rows of ``subsets[g]``, default all rows; a seed gives the same start alone or
    beside others)."""
    oversampling = 2 * k
    parts: list[int | None] = [None] * len(seeds) if subsets is None else list(subsets)
    candidates = blocks.draw(seeds, subsets=parts)
    for step in range(steps):
        phis = [st.cost for st in blocks.statistics_of_groups(candidates, gamma, parts)]
        live = [g for g, phi in enumerate(phis) if phi > 0]
        if not live:
            break
        drawn = blocks.draw(
            [seeds[g] + 1 + step for g in live],
            [candidates[g] for g in live],
            gamma,
            rates=[oversampling / phis[g] for g in live],
            limit=50 * oversampling,
            subsets=[parts[g] for g in live],
        )
        for g, (x, words) in zip(live, drawn, strict=True):
            cent, mode = candidates[g]
            known = _prototype_keys(cent, mode)
            fresh = [i for i in range(len(x)) if _prototype_key(x[i], words[i]) not in known]
            candidates[g] = (np.vstack([cent, x[fresh]]), np.vstack([mode, words[fresh]]))
        log.info("KPrototypes k-means|| round %d: %s candidates", step + 1, [len(c[0]) for c in candidates])
    out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(seeds)
    for g, (cent, mode) in enumerate(candidates):
        for extra in range(2 * k):
            if len(cent) >= k:
                break
            ((x, words),) = blocks.draw([seeds[g] + 99 + extra], subsets=[parts[g]])
            if _prototype_key(x[0], words[0]) not in _prototype_keys(cent, mode):
                cent, mode = np.vstack([cent, x]), np.vstack([mode, words])
        if len(cent) <= k:
            out[g] = (cent[:k], mode[:k])
    rest = [g for g in range(len(seeds)) if out[g] is None]
    weights = (
        blocks.statistics_of_groups([candidates[g] for g in rest], gamma, [parts[g] for g in rest])
        if rest
        else []
    )
    for g, stat in zip(rest, weights, strict=True):
        cent, mode = candidates[g]
        out[g] = local_kprototypes(
            cent, mode, stat.sizes.astype(float), k, gamma, np.random.RandomState(seeds[g] % 2**32)
        )
    return [o for o in out if o is not None]


def _prototype_key(centre: np.ndarray, mode: np.ndarray) -> tuple[Any, ...]:
    return (*map(float, centre), *map(str, mode))


def _prototype_keys(centres: np.ndarray, modes: np.ndarray) -> set[tuple[Any, ...]]:
    return {_prototype_key(c, m) for c, m in zip(centres, modes, strict=True)}


def local_kprototypes(
    x_num: np.ndarray,
    x_cat: np.ndarray,
    weights: np.ndarray,
    k: int,
    gamma: float,
    rng: np.random.RandomState,
    max_iter: int = 30,
    runs: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted k-means++ then weighted k-prototypes on a few weighted points (driver),
    ``runs`` times; the lowest weighted cost is kept. Cheap (a few dozen points), and a
    small cluster whose candidates k-means++ may pass over in one run is found in
    another."""
    vocab = [sorted(set(x_cat[:, j])) for j in range(x_cat.shape[1])]
    codes = encode_categories(x_cat, vocab)
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for _ in range(runs):
        centres, modes = _local_run(x_num, codes, weights, k, gamma, rng, max_iter, vocab)
        cost = float((local_dissimilarity(x_num, codes, centres, modes, gamma).min(axis=1) * weights).sum())
        if best is None or cost < best[0]:
            best = (cost, centres, modes)
    assert best is not None
    words = np.array([[vocab[a][c] for a, c in enumerate(row)] for row in best[2]], dtype=object)
    return best[1], words.reshape(k, x_cat.shape[1])


def _local_run(
    x_num: np.ndarray,
    codes: np.ndarray,
    weights: np.ndarray,
    k: int,
    gamma: float,
    rng: np.random.RandomState,
    max_iter: int,
    vocab: list[list[Any]],
) -> tuple[np.ndarray, np.ndarray]:
    chosen = [int(rng.choice(len(weights), p=weights / weights.sum())) if weights.sum() > 0 else 0]
    while len(chosen) < k:
        d = local_dissimilarity(x_num, codes, x_num[chosen], codes[chosen], gamma).min(axis=1) * weights
        if d.sum() <= 0:
            rest = [i for i in range(len(weights)) if i not in chosen]
            chosen.append(int(rng.choice(rest)))
        else:
            chosen.append(int(rng.choice(len(d), p=d / d.sum())))
    centres, modes = x_num[chosen].astype(float), codes[chosen].copy()
    for _ in range(max_iter):
        labels = local_dissimilarity(x_num, codes, centres, modes, gamma).argmin(axis=1)
        new_centres, new_modes = centres.copy(), modes.copy()
        for j in range(k):
            member = labels == j
            w = weights[member]
            if w.sum() <= 0:
                continue
            new_centres[j] = (x_num[member] * w[:, None]).sum(axis=0) / w.sum()
            for a in range(codes.shape[1]):
                tally = np.bincount(codes[member, a], weights=w, minlength=len(vocab[a]))
                new_modes[j, a] = int(np.argmax(tally))
        if np.allclose(new_centres, centres) and (new_modes == modes).all():
            break
        centres, modes = new_centres, new_modes
    return centres, modes


# --- model ------------------------------------------------------------------------------


@dataclass
class KPrototypesSummary:
    """Training summary: cost and iterations, as MLlib's clustering summaries."""

    k: int
    trainingCost: float
    iterations: int
    converged: bool
    costHistory: list[float] = field(default_factory=list)
    clusterSizes: list[int] = field(default_factory=list)
    n: int = 0


class KPrototypesModel(Model, _KPrototypesParams, ModelDataPersistence):
    """Prototypes (numeric centres and categorical modes), gamma and the training summary.

    ``segmentNames`` (optional, one per cluster; set after fitting) adds ``segmentNameCol``.
    """

    segmentNames: Param[list[str]] = Param(
        Params._dummy(), "segmentNames", "a name per cluster (optional)", TypeConverters.toListString
    )
    segmentNameCol: Param[str] = Param(
        Params._dummy(), "segmentNameCol", "output column of the segment names", TypeConverters.toString
    )

    def __init__(
        self,
        centres: list[list[float]] | None = None,
        modes: list[list[str]] | None = None,
        gamma: float = 1.0,
        summary: KPrototypesSummary | None = None,
    ) -> None:
        super().__init__()
        self._setDefault(segmentNameCol="segment_name")
        self._centres = np.asarray(centres or [], dtype=float)
        self._modes = np.asarray(modes or [], dtype=object)
        self._gamma = float(gamma)
        self._summary = summary

    @property
    def gamma(self) -> float:  # type: ignore[override]
        return self._gamma

    @property
    def summary(self) -> KPrototypesSummary:
        if self._summary is None:
            raise RuntimeError("KPrototypesModel: no summary (the model was not fitted in this session)")
        return self._summary

    @property
    def hasSummary(self) -> bool:
        return self._summary is not None

    def clusterCenters(self) -> list[np.ndarray]:
        """Numeric centre of each cluster (in the scaled space it was fitted in), named as
        pyspark.ml's ``KMeansModel.clusterCenters``."""
        return [c.copy() for c in self._centres.reshape(len(self._modes), -1)]

    def clusterCentres(self) -> list[np.ndarray]:
        """Deprecated spelling of ``clusterCenters`` (kept for code written before 0.2)."""
        warnings.warn(
            "KPrototypesModel.clusterCentres is deprecated; use clusterCenters (pyspark.ml's name)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.clusterCenters()

    def clusterModes(self) -> list[list[str]]:
        """Categorical mode of each cluster."""
        return [list(m) for m in self._modes]

    def getSegmentNames(self) -> list[str] | None:
        return self.getOrDefault(self.segmentNames) if self.isDefined(self.segmentNames) else None

    def setSegmentNames(self, names: Sequence[str]) -> KPrototypesModel:
        if len(names) != len(self._modes):
            raise ValueError(f"KPrototypesModel: {len(names)} names for {len(self._modes)} clusters")
        return self._set(segmentNames=list(names))

    def _distances(self) -> list[str]:
        return dissimilarity_sql(
            self.getNumericCols(),
            self.getCategoricalCols(),
            self._centres.reshape(len(self._modes), -1).tolist(),
            self._modes.tolist(),
            self._gamma,
        )

    def _transform(self, dataset: DataFrame) -> DataFrame:
        missing = [
            c for c in (*self.getNumericCols(), *self.getCategoricalCols()) if c not in dataset.columns
        ]
        if missing:
            raise ValueError(f"KPrototypesModel: input has no column(s) {missing}")
        out = with_nearest(dataset, self._distances(), self.getPredictionCol())
        names = self.getSegmentNames()
        if names:
            lookup = F.create_map(*[x for j, name in enumerate(names) for x in (F.lit(j), F.lit(name))])
            out = out.withColumn(
                self.getOrDefault(self.segmentNameCol), lookup[F.col(self.getPredictionCol())]
            )
        return out

    def computeCost(self, dataset: DataFrame) -> float:
        """Sum over rows of the dissimilarity to the nearest prototype."""
        row = with_nearest(dataset, self._distances(), "_j", "_d").agg(F.sum("_d")).first()
        return float(row[0] or 0.0) if row else 0.0

    def predict_local(self, x_num: np.ndarray, x_cat: np.ndarray) -> np.ndarray:
        """Cluster of each row of a small driver-side sample (same rule as ``transform``)."""
        vocab = [sorted(set(self._modes[:, a]) | set(x_cat[:, a])) for a in range(self._modes.shape[1])]
        d = local_dissimilarity(
            x_num,
            encode_categories(x_cat, vocab),
            self._centres.reshape(len(self._modes), -1),
            encode_categories(self._modes, vocab),
            self._gamma,
        )
        return np.asarray(d.argmin(axis=1))

    def _model_data(self) -> dict[str, Any]:
        return {
            "centres": self._centres.reshape(len(self._modes), -1).tolist(),
            "modes": self._modes.tolist(),
            "gamma": self._gamma,
            "summary": asdict(self._summary) if self._summary else None,
        }

    @classmethod
    def _from_model_data(cls, data: dict[str, Any]) -> KPrototypesModel:
        summary = KPrototypesSummary(**data["summary"]) if data.get("summary") else None
        return cls(centres=data["centres"], modes=data["modes"], gamma=data["gamma"], summary=summary)


def mixed_gamma(std: Sequence[float]) -> float:
    """kmodes' default gamma: half the mean standard deviation of the numeric columns."""
    return 0.5 * float(np.mean(std)) if len(std) else 1.0
