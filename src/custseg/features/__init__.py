"""Customer features (stage ``features``): windowed RFM, margin, cost-to-serve, engagement."""

from custseg.features.build import (
    DEFAULT_WINDOWS,
    EventTables,
    FeatureSpec,
    build_customer_features,
    build_feature_snapshots,
    build_features,
    customer_attributes,
    event_mapping_report,
    event_totals,
    features_from_totals,
    month_end_snapshots,
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
    "month_end_snapshots",
    "FeatureSpec",
    "build_features",
]
