"""Stage report: the run as one self-contained HTML page (docs/report.md)."""
