"""The k-prototypes input as cached columnar blocks, and one pass of statistics over them.

Written by hand because no library does it: Lloyd iterations need the same small
computation (nearest prototype, per-cluster counts, sums, category tallies and cost) over
the same rows many times, with only the prototypes changing. As a SQL expression each
pass carries the prototypes as literals, so Spark plans and compiles a new class every
pass (1.1-1.7 s at 480k rows, most of it not proportional to the data, and the JIT code
cache fills up over a sweep). Here the rows are encoded once (numeric columns as float64,
categorical columns as int32 codes into the block's own sorted vocabulary) into blocks of
up to ``BLOCK_ROWS`` rows, a binary value per block in a persisted DataFrame. The same
Python pass profiles each block (rows, numeric means and squared deviations, nulls, its
vocabulary), so a fit's count, standard deviations and vocabularies come from the cached
blocks, not from a second job over the input. Each pass is one
``mapInArrow`` over the blocks whose Python function computes a partition's partial
statistics with numpy and returns them as one row. Only partitions x k-sized rows reach
the driver, the plan is the same small one every pass, and nothing accumulates lineage.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.storagelevel import StorageLevel

BLOCK_ROWS = 1 << 18
MAX_CATEGORY_VALUES = 100_000
_BLOCK_SCHEMA = (
    "rows long, x binary, c binary, s binary, words array<array<string>>, mean array<double>, "
    "m2 array<double>, nulls array<long>, counts array<long>"
)
_STATS_SCHEMA = "s array<double>"
_ROWS_SCHEMA = "g int, key double, x array<double>, c array<int>"


@dataclass
class PassStatistics:
    """Sums over all rows of one pass: cost, sizes (k), numeric sums (k x p) and tallies
    (k x sum of vocabulary sizes, per column in vocabulary order)."""

    cost: float
    sizes: np.ndarray
    sums: np.ndarray
    tallies: np.ndarray


def _encode_partition(n_numeric: int, n_categorical: int, block_rows: int, subsets: int) -> Any:
    """Arrow batches of (numeric..., categorical..., [subset]) -> block rows. ``counts``:
    rows per subset 0..subsets-1, then rows with any other subset value."""

    def encode(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa
        import pyarrow.compute as pc

        xs: list[np.ndarray] = []
        cs: list[list[Any]] = [[] for _ in range(n_categorical)]
        ss: list[np.ndarray] = []
        held = 0

        def flush() -> Any:
            x = np.concatenate(xs, axis=1) if xs else np.empty((n_numeric, 0))
            codes, words, nulls = [], [], [int(v) for v in np.isnan(x).sum(axis=1)]
            for chunks in cs:
                values = pa.concat_arrays(chunks)
                nulls.append(values.null_count)
                vocab = pc.unique(values.drop_null())
                vocab = vocab.take(pc.sort_indices(vocab))
                if len(vocab) > MAX_CATEGORY_VALUES:  # an identifier: refused on the driver
                    vocab, code = vocab.slice(0, MAX_CATEGORY_VALUES + 1), np.zeros(len(values), np.int32)
                else:
                    code = pc.index_in(values, value_set=vocab).fill_null(-1).to_numpy(zero_copy_only=False)
                codes.append(np.asarray(code, dtype=np.int32))
                words.append(vocab.to_pylist())
            c = np.stack(codes) if codes else np.empty((0, x.shape[1]), dtype=np.int32)
            sub = np.concatenate(ss) if ss else np.empty(0, dtype=np.int32)
            inside = (sub >= 0) & (sub < subsets)
            counts = [*np.bincount(sub[inside], minlength=subsets).tolist(), int((~inside).sum())]
            mean = x.mean(axis=1)
            return pa.RecordBatch.from_arrays(
                [
                    pa.array([x.shape[1]], pa.int64()),
                    pa.array([np.ascontiguousarray(x, dtype=np.float64).tobytes()], pa.binary()),
                    pa.array([np.ascontiguousarray(c, dtype=np.int32).tobytes()], pa.binary()),
                    pa.array([np.ascontiguousarray(sub, dtype=np.int32).tobytes()], pa.binary()),
                    pa.array([words], pa.list_(pa.list_(pa.string()))),
                    pa.array([mean.tolist()], pa.list_(pa.float64())),
                    pa.array([((x - mean[:, None]) ** 2).sum(axis=1).tolist()], pa.list_(pa.float64())),
                    pa.array([nulls], pa.list_(pa.int64())),
                    pa.array([counts], pa.list_(pa.int64())),
                ],
                names=["rows", "x", "c", "s", "words", "mean", "m2", "nulls", "counts"],
            )

        for batch in batches:
            m = batch.num_rows
            if m == 0:
                continue
            cols = [batch.column(i).to_numpy(zero_copy_only=False) for i in range(n_numeric)]
            xs.append(np.array(cols, dtype=np.float64).reshape(n_numeric, m))
            for t in range(n_categorical):
                cs[t].append(batch.column(n_numeric + t))
            if subsets:
                ss.append(batch.column(n_numeric + n_categorical).fill_null(-1).to_numpy().astype(np.int32))
            held += m
            if held >= block_rows:
                yield flush()
                xs, cs, ss, held = [], [[] for _ in range(n_categorical)], [], 0
        if held:
            yield flush()

    return encode


Block = tuple[np.ndarray, np.ndarray, np.ndarray]  # numeric p x m, codes a x m, subset per row


def _blocks(batches: Iterator[Any], p: int, a: int, index: Sequence[dict[str, int]]) -> Iterator[Block]:
    """The (numeric p x m, codes a x m, subsets m) arrays of every block in a partition,
    the codes translated from the block's vocabulary to the fit's (``index``: value ->
    code); subsets are empty when the blocks have none."""
    for batch in batches:
        for r in range(batch.num_rows):
            m = batch.column(0)[r].as_py()
            x = np.frombuffer(batch.column(1)[r].as_buffer(), dtype=np.float64).reshape(p, m)
            local = np.frombuffer(batch.column(2)[r].as_buffer(), dtype=np.int32).reshape(a, m)
            sub = np.frombuffer(batch.column(3)[r].as_buffer(), dtype=np.int32)
            c = np.empty((a, m), dtype=np.int32)
            for t, words in enumerate(batch.column(4)[r].as_py()):
                try:
                    c[t] = np.array([index[t][w] for w in words], dtype=np.int32)[local[t]]
                except KeyError as missing:  # pragma: no cover - the cache was recomputed from other rows
                    raise RuntimeError(
                        f"KPrototypes: value {missing} of a block is not in the fit's vocabulary; the "
                        "input changed while the fit ran (make it deterministic or cache it)"
                    ) from None
            yield x, c, sub


class _Subsets:
    """A block's rows of one subset (None: all rows), selected once per block and pass."""

    def __init__(self, block: Block) -> None:
        self.block = block
        self.held: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def rows(self, subset: int | None) -> tuple[np.ndarray, np.ndarray]:
        x, c, sub = self.block
        if subset is None:
            return x, c
        if subset not in self.held:
            keep = np.flatnonzero(sub == subset)
            self.held[subset] = (x[:, keep], c[:, keep])
        return self.held[subset]


def block_dissimilarity(
    x: np.ndarray, c: np.ndarray, centres: np.ndarray, codes: np.ndarray, gamma: float
) -> np.ndarray:
    """m x k dissimilarities of a block's rows (columns of ``x`` and ``c``) to k prototypes:
    squared differences summed column by column, then gamma x mismatches, in the order of
    terms of the SQL expression. One column at a time keeps the temporaries at m values."""
    m = x.shape[1] if x.size else c.shape[1]
    d = np.empty((m, len(centres)))
    for j in range(len(centres)):
        squares = np.zeros(m)
        for i in range(x.shape[0]):
            diff = x[i] - centres[j, i]
            squares += diff * diff
        mismatches = np.zeros(m)
        for t in range(c.shape[0]):
            mismatches += c[t] != codes[j, t]
        d[:, j] = squares + gamma * mismatches
    return d


def encode_categories(values: np.ndarray, vocab: Sequence[Sequence[str]]) -> np.ndarray:
    """String categoricals (rows x columns) as codes into ``vocab`` (per column; unknown
    values get -1)."""
    out = np.full(values.shape, -1, dtype=np.int64)
    for j, words in enumerate(vocab):
        index = {w: i for i, w in enumerate(words)}
        out[:, j] = [index.get(v, -1) for v in values[:, j]]
    return out


Prototypes = tuple[np.ndarray, np.ndarray]  # (k x p centres, k x a codes or words)


def _pass_partition(
    groups: Sequence[Prototypes],
    gamma: float,
    index: Sequence[dict[str, int]],
    subsets: Sequence[int | None],
) -> Any:
    """Partial statistics of a partition against each group of prototypes (the starts of
    a multi-start fit share the pass), each over the rows of its subset (None: all rows),
    flattened group after group."""
    p, a = groups[0][0].shape[1], groups[0][1].shape[1]
    vocab_sizes = [len(v) for v in index]
    offsets = np.concatenate([[0], np.cumsum(vocab_sizes)]).astype(int)

    def step(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        costs = np.zeros(len(groups))
        sizes = [np.zeros(len(centres)) for centres, _ in groups]
        sums = [np.zeros((len(centres), p)) for centres, _ in groups]
        tallies = [np.zeros((len(centres), int(offsets[-1]))) for centres, _ in groups]
        for block in _blocks(batches, p, a, index):
            parts = _Subsets(block)
            for g, (centres, codes) in enumerate(groups):
                x, c = parts.rows(subsets[g])
                k = len(centres)
                d = block_dissimilarity(x, c, centres, codes, gamma)
                nearest = d.argmin(axis=1)
                costs[g] += float(d[np.arange(len(nearest)), nearest].sum())
                sizes[g] += np.bincount(nearest, minlength=k)
                for i in range(p):
                    sums[g][:, i] += np.bincount(nearest, weights=x[i], minlength=k)
                for t in range(a):
                    v = int(vocab_sizes[t])
                    tallies[g][:, offsets[t] : offsets[t + 1]] += np.bincount(
                        nearest * v + c[t], minlength=k * v
                    ).reshape(k, v)
        flat = np.concatenate(
            [
                np.concatenate([[costs[g]], sizes[g], sums[g].ravel(), tallies[g].ravel()])
                for g in range(len(groups))
            ]
        )
        yield pa.RecordBatch.from_arrays([pa.array([flat], pa.list_(pa.float64()))], names=["s"])

    return step


def _sample_partition(
    p: int,
    a: int,
    seeds: Sequence[int],
    groups: Sequence[Prototypes] | None,
    gamma: float,
    rates: Sequence[float],
    index: Sequence[dict[str, int]],
    subsets: Sequence[int | None],
) -> Any:
    """Per group g (seeded by ``seeds[g]`` and the partition): rows drawn with probability
    min(1, rates[g] x dissimilarity to the nearest of the group's prototypes); without
    groups, the row with the smallest seeded random key (one per seed and partition, with
    its key). A group draws the same rows whether alone or beside others."""

    def step(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa
        from pyspark import TaskContext

        context = TaskContext.get()
        partition = context.partitionId() if context else 0
        rngs = [np.random.default_rng([seed, partition]) for seed in seeds]
        best: list[tuple[float, np.ndarray, np.ndarray] | None] = [None] * len(seeds)
        for block in _blocks(batches, p, a, index):
            parts = _Subsets(block)
            for g, rng in enumerate(rngs):
                x, c = parts.rows(subsets[g])
                m = x.shape[1] if p else c.shape[1]
                if m == 0:
                    continue
                draw = rng.random(size=(m,))
                if groups is None:
                    i = int(draw.argmin())
                    held = best[g]
                    if held is None or draw[i] < held[0]:
                        best[g] = (float(draw[i]), x[:, i].copy(), c[:, i].copy())
                    continue
                centres, codes = groups[g]
                near = block_dissimilarity(x, c, centres, codes, gamma).min(axis=1)
                keep = draw < rates[g] * near
                if keep.any():
                    yield _rows_batch(pa, g, x[:, keep], c[:, keep], draw[keep])
        for g, held in enumerate(best):
            if held is not None:
                yield _rows_batch(pa, g, held[1][:, None], held[2][:, None], np.array([held[0]]))

    return step


def _rows_batch(pa: Any, group: int, x: np.ndarray, c: np.ndarray, key: np.ndarray) -> Any:
    return pa.RecordBatch.from_arrays(
        [
            pa.array(np.full(len(key), group, dtype=np.int32), pa.int32()),
            pa.array(key, pa.float64()),
            pa.array(list(x.T), pa.list_(pa.float64())),
            pa.array(list(c.T.astype(np.int32)), pa.list_(pa.int32())),
        ],
        names=["g", "key", "x", "c"],
    )


class ColumnBlocks:
    """Rows of ``numeric`` (doubles) and ``categorical`` columns persisted as numpy blocks,
    encoded and profiled in one job: ``n`` rows, population ``std`` per numeric column and
    the sorted ``vocab`` of every categorical column (the fit's codes index into it).
    Nulls (and NaN) are refused, as are categorical columns with more than
    ``MAX_CATEGORY_VALUES`` values, with a ValueError naming the columns. A block holds
    up to ``block_rows`` rows (about: whole Arrow batches are added until it is full).

    With ``subset_col`` (integers 0..subsets-1, anything else refused) every row belongs
    to one subset, ``subset_sizes`` counts them, and passes and draws can be restricted to
    one subset per group: several data sets (bootstrap resamples) fitted in the same
    passes. ``n`` and ``std`` are over all rows."""

    def __init__(
        self,
        data: DataFrame,
        numeric: Sequence[str],
        categorical: Sequence[str],
        block_rows: int = BLOCK_ROWS,
        subset_col: str | None = None,
        subsets: int = 0,
    ) -> None:
        self.numeric, self.categorical = list(numeric), list(categorical)
        self.subset_col, self.subsets = subset_col, subsets if subset_col else 0
        encoded = data.select(
            *[F.col(c).cast("double").alias(c) for c in self.numeric],
            *[F.col(c).cast("string").alias(c) for c in self.categorical],
            *([F.col(subset_col).cast("int").alias(subset_col)] if subset_col else []),
        )
        # one partition per core: a pass costs a task per partition (a Python round trip),
        # and more partitions than cores only add waves of them
        cores = max(1, data.sparkSession.sparkContext.defaultParallelism)
        if encoded.rdd.getNumPartitions() > cores:
            encoded = encoded.coalesce(cores)
        self.frame = encoded.mapInArrow(
            _encode_partition(len(self.numeric), len(self.categorical), block_rows, self.subsets),
            _BLOCK_SCHEMA,
        ).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            self.n, self.std, self.vocab, self.subset_sizes = self._profile()
        except BaseException:
            self.frame.unpersist()
            raise
        self.index = [{w: i for i, w in enumerate(words)} for words in self.vocab]

    def _profile(self) -> tuple[int, list[float], list[list[str]], list[int]]:
        """Rows, population stds (blocks' means and squared deviations merged as Chan et
        al.) and sorted vocabularies, from the per-block profiles (this job fills the cache)."""
        p, a = len(self.numeric), len(self.categorical)
        n, mean, m2 = 0, np.zeros(p), np.zeros(p)
        nulls = np.zeros(p + a, dtype=np.int64)
        words: list[set[str]] = [set() for _ in range(a)]
        counts = np.zeros(self.subsets + 1, dtype=np.int64)
        for row in self.frame.select("rows", "mean", "m2", "nulls", "words", "counts").collect():
            counts += np.asarray(row["counts"], dtype=np.int64)
            m = int(row["rows"])
            delta = np.asarray(row["mean"], dtype=float) - mean
            total = n + m
            mean = mean + delta * m / total
            m2 = m2 + np.asarray(row["m2"], dtype=float) + delta**2 * n * m / total
            n = total
            nulls += np.asarray(row["nulls"], dtype=np.int64)
            for t, block_words in enumerate(row["words"]):
                words[t].update(block_words)
        columns = [*self.numeric, *self.categorical]
        if nulls.any():
            found = {c: int(v) for c, v in zip(columns, nulls, strict=True) if v}
            raise ValueError(f"KPrototypes: null values in input columns {found}; fill or drop them first")
        wide = [c for c, w in zip(self.categorical, words, strict=True) if len(w) > MAX_CATEGORY_VALUES]
        if wide:
            raise ValueError(too_many_values(wide))
        if self.subset_col and counts[-1]:
            raise ValueError(
                f"KPrototypes: {int(counts[-1])} rows with {self.subset_col} outside 0..{self.subsets - 1}"
            )
        std = np.sqrt(m2 / n).tolist() if n else [0.0] * p
        return n, std, [sorted(w) for w in words], counts[:-1].tolist()

    def unpersist(self) -> None:
        self.frame.unpersist()

    def codes_of(self, modes: np.ndarray) -> np.ndarray:
        """k x a categorical prototypes as codes (a value outside the vocabulary: -1)."""
        rows = np.asarray(modes, dtype=object).reshape(len(modes), len(self.categorical))
        return encode_categories(rows, self.vocab).astype(np.int32)

    def words_of(self, codes: np.ndarray) -> np.ndarray:
        return np.array(
            [[self.vocab[t][int(i)] for t, i in enumerate(row)] for row in codes], dtype=object
        ).reshape(len(codes), len(self.categorical))

    def statistics(
        self, centres: np.ndarray, modes: np.ndarray, gamma: float, subset: int | None = None
    ) -> PassStatistics:
        """One pass: every row (of ``subset``, None: all) to its nearest prototype (ties to
        the lowest index, as ``np.argmin`` and the SQL assignment), summed per cluster."""
        return self.statistics_of_groups([(centres, modes)], gamma, [subset])[0]

    def statistics_of_groups(
        self, groups: Sequence[Prototypes], gamma: float, subsets: Sequence[int | None] | None = None
    ) -> list[PassStatistics]:
        """``statistics`` for several groups of (centres, modes), each over its subset
        (``subsets[g]``, default all rows), in the same single pass."""
        p, sizes_v = len(self.numeric), [len(v) for v in self.vocab]
        coded = [
            (np.asarray(centres, dtype=np.float64).reshape(len(centres), p), self.codes_of(modes))
            for centres, modes in groups
        ]
        widths = [1 + len(c) * (1 + p + sum(sizes_v)) for c, _ in coded]
        total = np.zeros(sum(widths))
        for row in self.frame.mapInArrow(
            _pass_partition(coded, float(gamma), self.index, self._subsets(subsets, len(coded))),
            _STATS_SCHEMA,
        ).collect():
            total += np.asarray(row["s"], dtype=np.float64)
        out = []
        start = 0
        for (centres, _), width in zip(coded, widths, strict=True):
            k, part = len(centres), total[start : start + width]
            out.append(
                PassStatistics(
                    cost=float(part[0]),
                    sizes=part[1 : 1 + k].round().astype(np.int64),
                    sums=part[1 + k : 1 + k + k * p].reshape(k, p),
                    tallies=part[1 + k + k * p :].reshape(k, sum(sizes_v)),
                )
            )
            start += width
        return out

    def draw(
        self,
        seeds: Sequence[int],
        groups: Sequence[Prototypes] | None = None,
        gamma: float = 1.0,
        rates: Sequence[float] = (),
        limit: int = 1,
        subsets: Sequence[int | None] | None = None,
    ) -> list[Prototypes]:
        """Rows as (numeric, categorical words) prototypes, one list per seed: without
        ``groups``, one seeded random row per seed; with them (one per seed), rows drawn
        with probability min(1, rates[g] x dissimilarity to the nearest of group g), at
        most ``limit`` per group (k-means|| sampling); seed g draws from the rows of
        ``subsets[g]`` (default all rows). One job for all seeds."""
        p, a = len(self.numeric), len(self.categorical)
        coded = (
            None
            if groups is None
            else [(np.asarray(c, dtype=np.float64), self.codes_of(m)) for c, m in groups]
        )
        step = _sample_partition(
            p,
            a,
            list(seeds),
            coded,
            float(gamma),
            list(rates),
            self.index,
            self._subsets(subsets, len(seeds)),
        )
        drawn = self.frame.mapInArrow(step, _ROWS_SCHEMA)
        # first rows: one per seed and partition; drawn rows: about 2k per group expected
        rows = (drawn if groups is None else drawn.limit(len(seeds) * limit)).collect()
        out = []
        for g in range(len(seeds)):
            mine = [r for r in rows if r["g"] == g]
            mine = [min(mine, key=lambda r: r["key"])] if groups is None and mine else mine[:limit]
            x = np.array([r["x"] for r in mine], dtype=np.float64).reshape(len(mine), p)
            c = np.array([r["c"] for r in mine], dtype=np.int32).reshape(len(mine), a)
            out.append((x, self.words_of(c)))
        return out

    def _subsets(self, subsets: Sequence[int | None] | None, groups: int) -> list[int | None]:
        chosen: list[int | None] = [None] * groups if subsets is None else list(subsets)
        if len(chosen) != groups or any(s is not None and not 0 <= s < self.subsets for s in chosen):
            raise ValueError(f"KPrototypes: subsets {chosen} for {groups} groups of {self.subsets} subsets")
        return chosen

    def modes_from(self, tallies: np.ndarray) -> np.ndarray:
        """Most frequent value per cluster and column; ties to the smallest value (kmodes'
        rule; the vocabularies are sorted)."""
        out = np.zeros((len(tallies), len(self.categorical)), dtype=np.int32)
        start = 0
        for t, words in enumerate(self.vocab):
            out[:, t] = tallies[:, start : start + len(words)].argmax(axis=1)
            start += len(words)
        return self.words_of(out)


def too_many_values(columns: Sequence[str]) -> str:
    return (
        f"KPrototypes: more than {MAX_CATEGORY_VALUES} distinct categorical values in {list(columns)}; "
        "a column with that many values is an identifier, not a category"
    )
