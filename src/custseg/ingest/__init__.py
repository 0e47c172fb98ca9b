"""Stage ``ingest``: data contracts, quarantine with reasons, reconciliation, drift checks."""
