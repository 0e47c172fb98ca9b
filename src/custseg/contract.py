"""The data contract: the bronze tables' columns and keys, the source systems, the identity
fields and the values other stages agree on. Every stage derives its column lists from
here (docs/architecture.md, "Data contract"); nothing here imports a stage."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ColumnSpec:
    """One contract column: name, Spark SQL type, and whether a row needs it."""

    name: str
    type: str
    required: bool = False


@dataclass(frozen=True)
class TableContract:
    """A bronze table: its columns, natural key and the column that orders duplicates.

    ``order_by`` decides which of several rows with one natural key is the first (kept);
    the rest go to quarantine. ``event`` tables are checked for orphans against the
    identity records.
    """

    name: str
    columns: tuple[ColumnSpec, ...]
    key: tuple[str, ...]
    order_by: str
    event: bool = False
    timestamp_cols: tuple[str, ...] = ()
    nonnegative_cols: tuple[str, ...] = ()
    amount_col: str | None = None
    id_col: str | None = None

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSpec:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no contract column {name!r}; columns: {self.names}")


def _c(name: str, type_: str, required: bool = False) -> ColumnSpec:
    return ColumnSpec(name, type_, required)


CONTRACTS: dict[str, TableContract] = {
    "identity_records": TableContract(
        name="identity_records",
        columns=(
            _c("source_system", "string", True),
            _c("source_id", "string", True),
            _c("first_name", "string"),
            _c("last_name", "string"),
            _c("email", "string"),
            _c("phone", "string"),
            _c("date_of_birth", "date"),
            _c("postcode", "string"),
            _c("address", "string"),
            _c("device_id", "string"),
            _c("account_number", "string"),
            _c("created_at", "timestamp"),
            _c("updated_at", "timestamp"),
        ),
        key=("source_system", "source_id"),
        order_by="updated_at",
        timestamp_cols=("created_at", "updated_at"),
    ),
    "transactions": TableContract(
        name="transactions",
        columns=(
            _c("transaction_id", "string", True),
            _c("source_system", "string", True),
            _c("source_id", "string", True),
            _c("ts", "timestamp", True),
            _c("amount", "double", True),
            _c("discount", "double"),
            _c("cost", "double"),
            _c("product_category", "string"),
            _c("channel", "string"),
        ),
        key=("transaction_id",),
        order_by="ts",
        event=True,
        timestamp_cols=("ts",),
        nonnegative_cols=("discount", "cost"),
        amount_col="amount",
        id_col="transaction_id",
    ),
    "support_contacts": TableContract(
        name="support_contacts",
        columns=(
            _c("contact_id", "string", True),
            _c("source_system", "string", True),
            _c("source_id", "string", True),
            _c("ts", "timestamp", True),
            _c("channel", "string"),
            _c("handle_minutes", "double"),
            _c("resolved", "boolean"),
            _c("cost", "double"),
        ),
        key=("contact_id",),
        order_by="ts",
        event=True,
        timestamp_cols=("ts",),
        nonnegative_cols=("handle_minutes", "cost"),
    ),
    "product_usage": TableContract(
        name="product_usage",
        columns=(
            _c("source_system", "string", True),
            _c("source_id", "string", True),
            _c("date", "date", True),
            _c("sessions", "long"),
            _c("events", "long"),
            _c("active_minutes", "double"),
            _c("features_used", "int"),
        ),
        key=("source_system", "source_id", "date"),
        order_by="date",
        event=True,
        timestamp_cols=("date",),
        nonnegative_cols=("sessions", "events", "active_minutes", "features_used"),
    ),
    "marketing_touches": TableContract(
        name="marketing_touches",
        columns=(
            _c("touch_id", "string", True),
            _c("source_system", "string"),
            _c("source_id", "string"),
            _c("ts", "timestamp", True),
            _c("channel", "string"),
            _c("campaign", "string"),
            _c("cost", "double"),
            _c("funnel_stage", "string"),
        ),
        key=("touch_id",),
        order_by="ts",
        event=True,
        timestamp_cols=("ts",),
        nonnegative_cols=("cost",),
    ),
    "customer_attributes": TableContract(
        name="customer_attributes",
        columns=(
            _c("source_system", "string", True),
            _c("source_id", "string", True),
            _c("plan", "string"),
            _c("region", "string"),
            _c("industry", "string"),
            _c("company_size", "string"),
            _c("acquisition_channel", "string"),
            _c("acquisition_cost", "double"),
            _c("lifecycle_stage", "string"),
            _c("legacy_persona", "string"),
            _c("onboarding_score", "double"),
            _c("decision_maker_level", "string"),
            _c("time_to_value_days", "int"),
            _c("investment_priority_score", "double"),
        ),
        key=("source_system", "source_id"),
        order_by="source_id",
        nonnegative_cols=("acquisition_cost",),
    ),
}

# Ingest order: identity first, so events can be checked for orphans against it.
TABLE_ORDER = (
    "identity_records",
    "transactions",
    "support_contacts",
    "product_usage",
    "marketing_touches",
    "customer_attributes",
)

# The systems identity records come from, in the default order of trust for attributes.
SOURCE_SYSTEMS = ("web", "app", "call_centre")
# A source record's key in every bronze table.
SOURCE_KEY = ("source_system", "source_id")
# The identity fields of an identity record (raw PII: bronze and silver only).
IDENTITY_FIELDS = tuple(
    c.name
    for c in CONTRACTS["identity_records"].columns
    if c.name not in (*SOURCE_KEY, *CONTRACTS["identity_records"].timestamp_cols)
)
# The event tables, in the order features reports them.
EVENT_TABLES = tuple(name for name in TABLE_ORDER if CONTRACTS[name].event)
# The segment name of customers no segment describes (outlier prototypes).
OUTLIER = "outlier"
