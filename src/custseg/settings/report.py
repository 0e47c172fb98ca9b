"""Settings of stage ``report``."""

from __future__ import annotations

from pydantic import Field

from custseg.settings.base import Section


class ReportConfig(Section):
    """Stage ``report``: one self-contained HTML page per run (docs/report.md)."""

    dir: str = Field(
        "./data/reports", description="Reports are written to <dir>/<run id>/report.html (and summary.txt)."
    )
    top_recommendations: int = Field(5, ge=1, description="Recommendations named in the plain-text summary.")
    confidence_bins: int = Field(20, ge=2, description="Bins of the match-confidence histogram.")
    dpi: int = Field(90, ge=50, le=300, description="Resolution of the inline PNG plots.")
