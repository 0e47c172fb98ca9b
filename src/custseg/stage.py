"""The stage contract: what every stage gets and the checks every stage makes the same way.

A stage is a function ``run(ctx: StageContext) -> None`` (``StageFn``) in
``custseg/<stage>/runner.py``. It reads its inputs through ``ctx.tables``, calls its
package's transforms and writes its outputs; the registry (``custseg.pipeline``) runs it
and publishes what it wrote. This module imports no stage and no registry, so the
layering is one way: the registry imports the stages, a stage imports this contract and
lower modules (config, catalog, contract, tables, tracking, ...), never another stage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession

from custseg import catalog
from custseg.columns import MissingColumnsError, require_columns
from custseg.config import Config
from custseg.tables import TableStore
from custseg.tracking import StageRun

log = logging.getLogger(__name__)

__all__ = [
    "STAGES",
    "MissingColumnsError",
    "MissingInputError",
    "StageContext",
    "StageFn",
    "require_columns",
    "require_tables",
]

# every stage, in pipeline order (the registry checks that it runs exactly these)
STAGES = ("generate", "ingest", "stitch", "features", "segment", "score", "clv", "insights", "report")


class MissingInputError(FileNotFoundError):
    """A stage's input table does not exist: the error names it and the stage to run first."""


@dataclass(frozen=True)
class StageContext:
    """What a stage gets: config, session, tables and its tracking handle."""

    cfg: Config
    spark: SparkSession
    tables: TableStore
    run: StageRun
    # steps run once the stage's tables are published (e.g. moving a registry alias), so
    # a stage killed before its last commit changes nothing readers see
    after_publish: list[Callable[[], None]] = field(default_factory=list)

    @property
    def stage(self) -> str:
        return self.run.stage

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Time ``step``: logged, and the MLflow metric ``seconds.<step>`` of the stage run
        (the stage's whole time is ``stage_seconds``, logged by the runner)."""
        started = time.perf_counter()
        yield
        seconds = time.perf_counter() - started
        log.info("%s: %s in %.1f s", self.stage, step.replace("_", " "), seconds)
        self.run.log_metrics({f"seconds.{step}": seconds})

    def require_tables(self, *names: str) -> None:
        """Raise ``MissingInputError`` for the first of ``names`` that does not exist."""
        require_tables(self.tables, self.stage, names)

    def read_optional(self, name: str) -> DataFrame | None:
        """The table, or None (logged) when it does not exist."""
        if self.tables.exists(name):
            return self.tables.read(name)
        log.warning("%s: %s does not exist; the figures that need it are left out", self.stage, name)
        return None


StageFn = Callable[[StageContext], None]


def require_tables(tables: TableStore, stage: str, names: Iterable[str]) -> None:
    """Raise ``MissingInputError`` naming the first of ``names`` that does not exist and
    the stage that writes it (from the catalog; for a table outside it, the setting)."""
    for name in names:
        if not tables.exists(name):
            owner = catalog.TABLES[name].owner if name in catalog.TABLES else None
            first = f"run the {owner} stage first" if owner else "run the stage that writes it first"
            raise MissingInputError(f"{stage} needs {name}; {first}")
