"""What one custseg run wrote: the Delta table versions it committed (its MLflow side is
``tracking.run_record``).

Every Delta commit custseg makes carries the run id as ``userMetadata`` (``tables.py``),
so the version of a table that run R wrote is the one R's finished stages published in
``meta.stage_runs``, or, for tables written outside stages, the newest commit whose
``userMetadata`` is R. The report and ``jobs/compare.py`` read each run's tables at those versions (Delta
time travel), so a later run that overwrote a table does not change what an earlier run's
report or comparison shows.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pyspark.sql import DataFrame

from custseg import hadoopfs
from custseg.config import REDACTED, is_secret_key, redact_text
from custseg.tables import LAYERS, TableNotFoundError, TableStore

log = logging.getLogger(__name__)
# Delta reads of small tables are mostly driver work (log replay, planning): a few at a
# time from threads (Spark runs jobs of several threads concurrently) cut the wall time.
_THREADS = 4


def redact(key: str, value: str) -> str:
    """A logged config value as it may be shown (report, compare): ``***`` for a key that
    names a secret, URIs without user information or secret parameters."""
    return REDACTED if is_secret_key(key.split(".")) else redact_text(value)


class RunNotFoundError(LookupError):
    """No trace of the run id: no MLflow parent run and no Delta commit."""


def table_names(tables: TableStore) -> list[str]:
    """Every ``layer.table`` under the warehouse that is a Delta table."""
    names = []
    for layer in LAYERS:
        for table in hadoopfs.list_dirs(tables.spark, f"{tables.warehouse}/{layer}"):
            name = f"{layer}.{table}"
            try:
                if tables.exists(name):
                    names.append(name)
            except ValueError:  # a folder that is not a custseg table name
                continue
    return names


@dataclass(frozen=True)
class TableVersion:
    """A table as one run sees it: the version it wrote (if any) and the newest one."""

    table: str
    written: int | None  # newest version whose commit carries the run id
    latest: int
    latest_run: str | None  # the run id of the newest commit
    operation: str | None  # the operation of the version written (or of the newest one)
    published: int | None = None  # the version the last finished stage run published

    @property
    def version(self) -> int:
        """The version the run's readers use: the one it wrote, else the published one
        (``meta.stage_runs``: not a killed stage's half), else the newest."""
        if self.written is not None:
            return self.written
        return self.published if self.published is not None else self.latest


def table_versions(
    tables: TableStore, run_id: str, names: list[str] | None = None
) -> dict[str, TableVersion]:
    """For each table (default: all in the warehouse), the version ``run_id`` wrote.

    One small Delta history query per table (one row per commit, collected: a table has
    as many commits as runs wrote it, not rows), a few tables at a time.
    """
    wanted = [n for n in (names if names is not None else table_names(tables)) if tables.exists(n)]
    published = tables.published()
    by_run = tables.published_by(run_id)
    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        found = list(pool.map(lambda n: _table_version(tables, n, run_id, published.get(n), by_run), wanted))
    return dict(zip(wanted, found, strict=True))


def _table_version(
    tables: TableStore, name: str, run_id: str, published: int | None, by_run: dict[str, int] | None
) -> TableVersion:
    """``by_run``: what the run's finished stages published (None: the run has no stage
    runs); a commit of the run that none of them published (a killed attempt's) is not
    the run's version."""
    commits = tables.history(name).select("version", "userMetadata", "operation").collect()
    newest = max(commits, key=lambda r: r["version"])
    mine = [r for r in commits if r["userMetadata"] == run_id]
    if by_run is not None:
        mine = [r for r in mine if r["version"] == by_run.get(name)]
    row = max(mine, key=lambda r: r["version"]) if mine else newest
    return TableVersion(
        table=name,
        written=int(row["version"]) if mine else None,
        latest=int(newest["version"]),
        latest_run=newest["userMetadata"],
        operation=row["operation"],
        published=published,
    )


def read_as_written(tables: TableStore, name: str, versions: dict[str, TableVersion]) -> DataFrame:
    """The table at the version in ``versions`` (the run's own, else the newest)."""
    found = versions.get(name)
    if found is None:
        raise TableNotFoundError(f"table {name} does not exist under {tables.warehouse}")
    return tables.read(name, version=found.version)
