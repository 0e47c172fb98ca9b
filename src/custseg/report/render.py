"""The report as one self-contained HTML page (Jinja2 template in ``templates/``; inline
CSS and base64 PNG figures; no script, font or image fetched from anywhere)."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.resources import files

from jinja2 import Environment, StrictUndefined

from custseg.report.sections import Section


def environment() -> Environment:
    return Environment(
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(run_id: str, warehouse: str, sections: list[Section]) -> str:
    """The page: a header, a table of contents and the sections in order."""
    # read through importlib.resources: works from the zip spark-submit ships too
    source = files("custseg.report").joinpath("templates/report.html.j2").read_text(encoding="utf-8")
    template = environment().from_string(source)
    return template.render(
        run_id=run_id,
        warehouse=warehouse,
        generated=f"generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        sections=sections,
    )
