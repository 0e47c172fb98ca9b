"""Event-level rules shared by the stages that read the bronze events (features, clv,
insights): what an order is, how an event row finds its customer, how a date is given.
One rule in one place; nothing here imports a stage."""

from __future__ import annotations

from datetime import date

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from custseg.columns import require_columns
from custseg.contract import SOURCE_KEY

IDENTITY_MAP_COLUMNS = (*SOURCE_KEY, "customer_id")
ORDER_COLUMNS = (*SOURCE_KEY, "ts", "amount", "channel", "product_category")


def as_date(value: date | str, name: str = "as_of") -> date:
    """A date from a ``date`` or an ISO ``YYYY-MM-DD`` string; ValueError naming ``name``."""
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"{name} must be an ISO date (YYYY-MM-DD), got {value!r}") from exc
    raise TypeError(f"{name} must be a datetime.date or an ISO date string, got {type(value).__name__}")


def is_order(amount: str = "amount") -> Column:
    """Whether a transaction row is an order: every row that is not a refund (a refund is
    a negative amount), free and fully discounted purchases (amount 0) included. Revenue
    stays the amount paid. Features, CLV and the KPIs count orders by this one rule."""
    return F.col(amount) >= 0


def customer_keys(identity_map: DataFrame) -> DataFrame:
    """(source_system, source_id, customer_id), one row per source key."""
    require_columns(identity_map, IDENTITY_MAP_COLUMNS, "identity_map")
    return identity_map.select(*SOURCE_KEY, "customer_id").dropDuplicates(list(SOURCE_KEY))


def mapped_orders(transactions: DataFrame, identity_map: DataFrame) -> DataFrame:
    """Orders (``is_order``: every non-refund row) with their customer: customer_id, day,
    amount, channel, product_category; hash-partitioned by customer_id, like the totals of
    ``persist_by_customer``, so joining their per-customer aggregates needs no shuffle."""
    require_columns(transactions, ORDER_COLUMNS, "transactions")
    return (
        transactions.where(is_order())
        .join(customer_keys(identity_map), on=list(SOURCE_KEY), how="inner")
        .select("customer_id", F.to_date("ts").alias("day"), "amount", "channel", "product_category")
        .repartition("customer_id")
    )
