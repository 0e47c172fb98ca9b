"""Reference data: the lists the defaults are made of, kept as data files beside this
module (nicknames, placeholder values) and the export format of the call-centre system
the generator imitates. Loaded by ``custseg.config`` for its defaults; a deployment
replaces them through settings (``stitch.nicknames``, ``stitch.placeholders``,
``ingest.sources``), not by editing these files."""

from __future__ import annotations

import csv
from functools import cache
from importlib.resources import files

# The call centre's CSV export names its columns its own way, writes UK day-first dates
# and addresses over two lines: the generator writes it so, ingest's defaults read it so.
CALL_CENTRE_COLUMNS = {
    "CustRef": "source_id",
    "Forename": "first_name",
    "Surname": "last_name",
    "Email Address": "email",
    "Tel": "phone",
    "DOB": "date_of_birth",
    "Post Code": "postcode",
    "Address": "address",
    "Acct No": "account_number",
    "Created": "created_at",
    "Last Updated": "updated_at",
}
CALL_CENTRE_DATE = "dd/MM/yyyy"
CALL_CENTRE_TIMESTAMP = "dd/MM/yyyy HH:mm:ss"


@cache
def _nicknames() -> tuple[tuple[str, str], ...]:
    with (files(__package__) / "nicknames.csv").open(encoding="utf-8") as f:
        return tuple((row["nickname"], row["formal"]) for row in csv.DictReader(f))


def nicknames() -> dict[str, str]:
    """Nickname -> formal first name (lower case, accents folded): ``nicknames.csv``."""
    return dict(_nicknames())


@cache
def _placeholders() -> tuple[str, ...]:
    text = (files(__package__) / "placeholders.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line and not line.startswith("# "))


def placeholders() -> list[str]:
    """Values that stand for "unknown" in an identity field: ``placeholders.txt``."""
    return list(_placeholders())
