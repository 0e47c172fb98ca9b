"""One check for a frame's columns, shared by every transform (Spark and pandas alike).
Imports nothing heavy: transforms whose functions run in Python workers import it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class MissingColumnsError(ValueError):
    """A DataFrame lacks columns a step needs: the error names where, which, and what it has."""


class HasColumns(Protocol):
    """A Spark or pandas DataFrame: anything with ``columns``."""

    @property
    def columns(self) -> Iterable[str]: ...


def require_columns(df: HasColumns, columns: Iterable[str], where: str) -> None:
    """Raise ``MissingColumnsError`` when ``df`` (Spark or pandas) lacks any of ``columns``."""
    have = list(df.columns)
    missing = [c for c in columns if c not in have]
    if missing:
        raise MissingColumnsError(f"{where}: missing column(s) {missing}; it has {have}")
