"""One writer at a time: a run's hold on its warehouse, kept in the Delta table
``meta.leases``.

A run takes the hold with a conditional MERGE (taken when free, expired, its own, or left
by a process on this host that is gone), renews it from a background thread every third
of ``run.lease_seconds`` and deletes it when done. A second run waits up to
``run.lease_wait_seconds`` and then stops with ``LeaseHeldError`` naming the holder. A run
killed with SIGKILL leaves its hold behind: it expires after ``run.lease_seconds``, or at
once for a run on the same host (its process id is gone). Delta's own conflicts between
two MERGEs into the table are retried; the MERGE is idempotent.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from delta.tables import DeltaTable
from pyspark.sql import functions as F

from custseg import catalog
from custseg.tables import TableStore, retry_conflicts, utc_now

log = logging.getLogger(__name__)

SCHEMA = "name string, owner string, run_id string, acquired_at timestamp, expires_at timestamp"
_CONFLICT_TRIES = 20


class LeaseHeldError(RuntimeError):
    """Another run holds the warehouse."""


class LeaseLostError(RuntimeError):
    """This run's hold expired before it could be renewed and another run took it."""


def owner_of(run_id: str) -> str:
    """A holder's name: run id, host and process id (what a waiting run is told)."""
    return f"{run_id}@{socket.gethostname()}:{os.getpid()}"


def _gone(owner: str) -> bool:
    """Whether ``owner`` was a process on this host that no longer runs."""
    host_pid = owner.rsplit("@", 1)[-1]
    host, _, pid = host_pid.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Lease:
    """The hold of ``owner`` on ``name`` (default: the whole warehouse)."""

    def __init__(self, tables: TableStore, seconds: int, name: str = "warehouse") -> None:
        self.tables = tables
        self.seconds = seconds
        self.name = name
        self.owner = owner_of(tables.run_id)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: str | None = None  # set by the renewal thread when another run took over

    def _ensure_table(self) -> None:
        spark = self.tables.spark
        path = self.tables.path(catalog.LEASES)

        def create() -> None:  # two runs may create it at once: Delta lets one commit version 0
            if not DeltaTable.isDeltaTable(spark, path):
                spark.createDataFrame([], SCHEMA).write.format("delta").mode("append").save(path)

        retry_conflicts(create, catalog.LEASES, tries=_CONFLICT_TRIES, pause=0.2)

    def holder(self) -> tuple[str, datetime] | None:
        """The current holder and its expiry, or None."""
        row = (
            self.tables.spark.read.format("delta")
            .load(self.tables.path(catalog.LEASES))
            .where(F.col("name") == self.name)
            .select("owner", "expires_at")
            .first()
        )
        return (row["owner"], row["expires_at"]) if row else None

    def _try_take(self) -> bool:
        now = utc_now()
        current = self.holder()
        stale = current[0] if current and _gone(current[0]) else ""
        src = self.tables.spark.createDataFrame(
            [(self.name, self.owner, self.tables.run_id, now, now + timedelta(seconds=self.seconds))], SCHEMA
        )
        target = DeltaTable.forPath(self.tables.spark, self.tables.path(catalog.LEASES))
        free = (F.col("t.expires_at") < F.lit(now)) | (F.col("t.owner") == F.col("s.owner"))
        if stale:
            free = free | (F.col("t.owner") == F.lit(stale))
        merge = (
            target.alias("t")
            .merge(src.alias("s"), "t.name = s.name")
            .whenMatchedUpdateAll(condition=free)
            .whenNotMatchedInsertAll()
        )
        retry_conflicts(merge.execute, catalog.LEASES, tries=_CONFLICT_TRIES, pause=0.2)
        now_holder = self.holder()
        return now_holder is not None and now_holder[0] == self.owner

    def acquire(self, wait_seconds: int) -> None:
        """Take the hold, waiting up to ``wait_seconds`` for another holder."""
        self._ensure_table()
        deadline = time.monotonic() + wait_seconds
        told = False
        while not self._try_take():
            current = self.holder()
            who = f"{current[0]} until {current[1]:%Y-%m-%d %H:%M:%S} UTC" if current else "another run"
            if time.monotonic() >= deadline:
                raise LeaseHeldError(
                    f"warehouse {self.tables.warehouse} is held by {who}; wait for it, or raise "
                    "run.lease_wait_seconds (a killed run's hold expires after run.lease_seconds)"
                )
            if not told:
                log.info("waiting up to %d s for the warehouse, held by %s", wait_seconds, who)
                told = True
            time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))
        log.info("run %s holds warehouse %s", self.tables.run_id, self.tables.warehouse)
        self._thread = threading.Thread(target=self._renew, name="custseg-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                if not self._try_take():
                    self.lost = str(self.holder())
                    log.error("lost the hold on the warehouse to %s", self.lost)
                    return
            except Exception as exc:  # noqa: BLE001 - renewal retries at the next tick
                log.warning("renewing the warehouse hold failed: %s", type(exc).__name__)

    def release(self) -> None:
        """Give the hold up (only this owner's row is deleted)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        table = DeltaTable.forPath(self.tables.spark, self.tables.path(catalog.LEASES))
        mine = (F.col("name") == self.name) & (F.col("owner") == self.owner)
        retry_conflicts(lambda: table.delete(mine), catalog.LEASES, tries=_CONFLICT_TRIES, pause=0.2)


_held: dict[str, Lease] = {}  # warehouses this process holds (a pipeline's stages nest)


def check_held(warehouse: str) -> None:
    """Raise ``LeaseLostError`` when this process's hold on ``warehouse`` was taken over
    (its renewal came too late): called before a stage publishes."""
    lease = _held.get(warehouse)
    if lease is not None and lease.lost:
        raise LeaseLostError(
            f"warehouse {warehouse}: this run's hold expired and {lease.lost} took it; nothing "
            "of this stage was published (raise run.lease_seconds)"
        )


@contextmanager
def holding(tables: TableStore, seconds: int, wait_seconds: int) -> Iterator[None]:
    """Hold the warehouse of ``tables`` for the block (re-entrant within a process)."""
    if tables.warehouse in _held:
        yield
        return
    lease = Lease(tables, seconds)
    lease.acquire(wait_seconds)
    _held[tables.warehouse] = lease
    try:
        yield
    finally:
        _held.pop(tables.warehouse, None)
        lease.release()
