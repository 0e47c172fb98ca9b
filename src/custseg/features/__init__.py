"""Customer features (stage ``features``): windowed RFM, margin, cost-to-serve, engagement."""

from custseg.features.core import (
    DEFAULT_WINDOWS,
    EventTables,
    build_customer_features,
    build_feature_snapshots,
    customer_attributes,
    event_mapping_report,
    event_totals,
    features_from_totals,
    mapped_orders,
    month_end_snapshots,
    snapshot_features_and_totals,
)

__all__ = [
    "DEFAULT_WINDOWS",
    "EventTables",
    "build_customer_features",
    "build_feature_snapshots",
    "customer_attributes",
    "event_totals",
    "event_mapping_report",
    "features_from_totals",
    "mapped_orders",
    "month_end_snapshots",
    "snapshot_features_and_totals",
]
