"""Connected components in Spark, by min-label propagation with pointer jumping.

Hand-written because no maintained library does it on Spark 4 from PyPI (GraphFrames
has no Spark 4 build on Maven Central for this stack, and Splink's own clustering builds
one ever-growing plan that ran the driver out of heap here). Every iteration:

1. each vertex takes the smallest label among itself and its neighbours;
2. pointer jumping: it then takes the label of its label (halves chain lengths);
3. the labels are checkpointed, which cuts the lineage, and the changed labels counted.

Checkpoints are local (executor storage) by default: the labels are small and rebuilt in
seconds, and a reliable checkpoint per iteration cost more than the iteration; pass
``reliable=True`` to write them to the checkpoint directory instead.

Labels only decrease and are always ids of the same component, so at the fixed point
every component carries its smallest vertex id. Only vertices with an edge take part;
isolated vertices are their own component.
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

log = logging.getLogger(__name__)


class ComponentsDidNotConverge(RuntimeError):
    """Labels still changed after the iteration limit."""


def connected_components(edges: DataFrame, *, max_iterations: int = 50, reliable: bool = False) -> DataFrame:
    """(id, component) for every vertex of ``edges`` (columns ``src``, ``dst``); the
    component is the smallest id in it. Raises ComponentsDidNotConverge after
    ``max_iterations`` iterations with labels still changing."""
    both = (
        edges.select(F.col("src").alias("a"), F.col("dst").alias("b"))
        .unionByName(edges.select(F.col("dst").alias("a"), F.col("src").alias("b")))
        .where(F.col("a") != F.col("b"))
        .distinct()
    )
    both = both.checkpoint() if reliable else both.localCheckpoint()
    labels = both.select(F.col("a").alias("id")).distinct().withColumn("label", F.col("id"))
    for iteration in range(1, max_iterations + 1):
        neighbour = both.join(labels.withColumnRenamed("id", "b"), "b").select(
            F.col("a").alias("id"), "label"
        )
        smallest = labels.unionByName(neighbour).groupBy("id").agg(F.min("label").alias("label"))
        pointer = smallest.select(F.col("id").alias("label"), F.col("label").alias("jump"))
        jumped = smallest.join(pointer, "label", "left").select(
            "id", F.least("label", F.coalesce("jump", "label")).alias("label")
        )
        jumped = jumped.checkpoint() if reliable else jumped.localCheckpoint()
        changed = (
            jumped.alias("n")
            .join(labels.alias("o"), "id")
            .where(F.col("n.label") != F.col("o.label"))
            .count()
        )
        labels = jumped
        log.info("connected components: iteration %d, %d labels changed", iteration, changed)
        if changed == 0:
            return labels.withColumnRenamed("label", "component")
    raise ComponentsDidNotConverge(
        f"connected components still changing after {max_iterations} iterations "
        "(stitch.max_iterations); the link graph has very long chains"
    )
