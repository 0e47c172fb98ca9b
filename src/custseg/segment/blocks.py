"""The k-prototypes input as cached columnar blocks, and one pass of statistics over them.

Written by hand because no library does it: Lloyd iterations need the same small
computation (nearest prototype, per-cluster counts, sums, category tallies and cost) over
the same rows many times, with only the prototypes changing. As a SQL expression each
pass carries the prototypes as literals, so Spark plans and compiles a new class every
pass (1.1-1.7 s at 480k rows, most of it not proportional to the data, and the JIT code
cache fills up over a sweep). Here the rows are encoded once (numeric columns as float64,
categorical columns as int32 codes into sorted vocabularies) into blocks of up to
``BLOCK_ROWS`` rows, a binary value per block in a persisted DataFrame; each pass is one
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
_BLOCK_SCHEMA = "rows long, x binary, c binary"
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


def _encode_partition(n_numeric: int, n_categorical: int) -> Any:
    def encode(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        xs: list[np.ndarray] = []
        cs: list[np.ndarray] = []
        held = 0

        def flush() -> Any:
            x = np.concatenate(xs, axis=1) if xs else np.empty((n_numeric, 0))
            c = np.concatenate(cs, axis=1) if cs else np.empty((n_categorical, 0), dtype=np.int32)
            return pa.RecordBatch.from_arrays(
                [
                    pa.array([x.shape[1]], pa.int64()),
                    pa.array([np.ascontiguousarray(x, dtype=np.float64).tobytes()], pa.binary()),
                    pa.array([np.ascontiguousarray(c, dtype=np.int32).tobytes()], pa.binary()),
                ],
                names=["rows", "x", "c"],
            )

        for batch in batches:
            m = batch.num_rows
            if m == 0:
                continue
            cols = [batch.column(i).to_numpy(zero_copy_only=False) for i in range(n_numeric + n_categorical)]
            xs.append(np.array(cols[:n_numeric], dtype=np.float64).reshape(n_numeric, m))
            cs.append(np.array(cols[n_numeric:], dtype=np.int32).reshape(n_categorical, m))
            held += m
            if held >= BLOCK_ROWS:
                yield flush()
                xs, cs, held = [], [], 0
        if held:
            yield flush()

    return encode


def _blocks(batches: Iterator[Any], p: int, a: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The (numeric p x m, codes a x m) arrays of every block in a partition."""
    for batch in batches:
        for r in range(batch.num_rows):
            m = batch.column(0)[r].as_py()
            x = np.frombuffer(batch.column(1)[r].as_buffer(), dtype=np.float64).reshape(p, m)
            c = np.frombuffer(batch.column(2)[r].as_buffer(), dtype=np.int32).reshape(a, m)
            yield x, c


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


Prototypes = tuple[np.ndarray, np.ndarray]  # (k x p centres, k x a codes or words)


def _pass_partition(groups: Sequence[Prototypes], gamma: float, vocab_sizes: Sequence[int]) -> Any:
    """Partial statistics of a partition against each group of prototypes (the starts of
    a multi-start fit share the pass), flattened group after group."""
    p, a = groups[0][0].shape[1], groups[0][1].shape[1]
    offsets = np.concatenate([[0], np.cumsum(vocab_sizes)]).astype(int)

    def step(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        costs = np.zeros(len(groups))
        sizes = [np.zeros(len(centres)) for centres, _ in groups]
        sums = [np.zeros((len(centres), p)) for centres, _ in groups]
        tallies = [np.zeros((len(centres), int(offsets[-1]))) for centres, _ in groups]
        for x, c in _blocks(batches, p, a):
            for g, (centres, codes) in enumerate(groups):
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
        for x, c in _blocks(batches, p, a):
            m = x.shape[1] if p else c.shape[1]
            for g, rng in enumerate(rngs):
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
    """Rows of ``numeric`` (doubles, no nulls) and ``categorical`` columns, persisted as
    numpy blocks; categorical values become codes into ``vocab`` (sorted lists that must
    hold every value)."""

    def __init__(
        self,
        data: DataFrame,
        numeric: Sequence[str],
        categorical: Sequence[str],
        vocab: Sequence[Sequence[str]],
    ) -> None:
        self.numeric, self.categorical = list(numeric), list(categorical)
        self.vocab = [list(v) for v in vocab]
        codes = [
            (F.array_position(F.array(*[F.lit(w) for w in words]), F.col(c)) - 1).cast("int").alias(c)
            for c, words in zip(self.categorical, self.vocab, strict=True)
        ]
        encoded = data.select(*[F.col(c).cast("double").alias(c) for c in self.numeric], *codes)
        # one partition per core: a pass costs a task per partition (a Python round trip),
        # and more partitions than cores only add waves of them
        cores = max(1, data.sparkSession.sparkContext.defaultParallelism)
        if encoded.rdd.getNumPartitions() > cores:
            encoded = encoded.coalesce(cores)
        self.frame = encoded.mapInArrow(
            _encode_partition(len(self.numeric), len(self.categorical)), _BLOCK_SCHEMA
        ).persist(StorageLevel.MEMORY_AND_DISK)

    def unpersist(self) -> None:
        self.frame.unpersist()

    def codes_of(self, modes: np.ndarray) -> np.ndarray:
        """k x a categorical prototypes as codes (a value outside the vocabulary: -1)."""
        index = [{w: i for i, w in enumerate(words)} for words in self.vocab]
        return np.array(
            [[index[t].get(v, -1) for t, v in enumerate(row)] for row in modes], dtype=np.int32
        ).reshape(len(modes), len(self.categorical))

    def words_of(self, codes: np.ndarray) -> np.ndarray:
        return np.array(
            [[self.vocab[t][int(i)] for t, i in enumerate(row)] for row in codes], dtype=object
        ).reshape(len(codes), len(self.categorical))

    def statistics(self, centres: np.ndarray, modes: np.ndarray, gamma: float) -> PassStatistics:
        """One pass: every row to its nearest prototype (ties to the lowest index, as
        ``np.argmin`` and the SQL assignment), summed per cluster (one job)."""
        return self.statistics_of_groups([(centres, modes)], gamma)[0]

    def statistics_of_groups(self, groups: Sequence[Prototypes], gamma: float) -> list[PassStatistics]:
        """``statistics`` for several groups of (centres, modes) in the same single pass."""
        p, sizes_v = len(self.numeric), [len(v) for v in self.vocab]
        coded = [
            (np.asarray(centres, dtype=np.float64).reshape(len(centres), p), self.codes_of(modes))
            for centres, modes in groups
        ]
        widths = [1 + len(c) * (1 + p + sum(sizes_v)) for c, _ in coded]
        total = np.zeros(sum(widths))
        for row in self.frame.mapInArrow(
            _pass_partition(coded, float(gamma), sizes_v), _STATS_SCHEMA
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
    ) -> list[Prototypes]:
        """Rows as (numeric, categorical words) prototypes, one list per seed: without
        ``groups``, one seeded random row per seed; with them (one per seed), rows drawn
        with probability min(1, rates[g] x dissimilarity to the nearest of group g), at
        most ``limit`` per group (k-means|| sampling). One job for all seeds."""
        p, a = len(self.numeric), len(self.categorical)
        coded = (
            None
            if groups is None
            else [(np.asarray(c, dtype=np.float64), self.codes_of(m)) for c, m in groups]
        )
        step = _sample_partition(p, a, list(seeds), coded, float(gamma), list(rates))
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

    def modes_from(self, tallies: np.ndarray) -> np.ndarray:
        """Most frequent value per cluster and column; ties to the smallest value (kmodes'
        rule; the vocabularies are sorted)."""
        out = np.zeros((len(tallies), len(self.categorical)), dtype=np.int32)
        start = 0
        for t, words in enumerate(self.vocab):
            out[:, t] = tallies[:, start : start + len(words)].argmax(axis=1)
            start += len(words)
        return self.words_of(out)
