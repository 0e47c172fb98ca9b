"""Settings of stage ``generate``: the synthetic world and its damage."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import Field

from custseg.settings.base import ConfigError, Section


class BadInputConfig(Section):
    """Deliberately malformed rows the generator injects for ingest to catch."""

    enabled: bool = False
    rate: float = Field(0.002, ge=0.0, le=0.2, description="Share of rows corrupted per file.")


class NoiseConfig(Section):
    """Rates of realistic noise in identity records (per record, independently)."""

    typo: float = Field(0.06, ge=0, le=1)
    nickname: float = Field(0.08, ge=0, le=1)
    swap_names: float = Field(0.02, ge=0, le=1)
    missing_field: float = Field(0.10, ge=0, le=1)
    email_variant: float = Field(0.15, ge=0, le=1)
    phone_format: float = Field(0.5, ge=0, le=1)
    moved: float = Field(0.05, ge=0, le=1)
    dob_swap: float = Field(0.02, ge=0, le=1)
    placeholder: float = Field(0.01, ge=0, le=1)
    household_share: float = Field(0.03, ge=0, le=1)
    shared_device: float = Field(0.01, ge=0, le=1)
    common_name: float = Field(0.02, ge=0, le=1)


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"n_people": 2_000, "partitions": 4},
    "small": {"n_people": 50_000, "partitions": 8},
    "reference": {"n_people": 480_000, "partitions": 32},
}


class GenerateConfig(Section):
    """The synthetic customer world (``custseg.generate``)."""

    preset: Literal["tiny", "small", "reference", "custom"] = "small"
    n_people: int | None = Field(None, ge=10, description="People to draw; null takes the preset's size.")
    partitions: int | None = Field(None, ge=1, description="Output partitions; null = preset.")
    end_date: date = Field(date(2026, 10, 31), description="Last day of the 3-year history.")
    years: int = Field(3, ge=1, le=10)
    records_per_person: float = Field(2.5, ge=1.0, le=6.0)
    bot_share: float = Field(0.003, ge=0.0, le=0.05)
    anonymous_touch_share: float = Field(0.15, ge=0.0, le=1.0)
    output_dir: str = "./data/generated"
    noise: NoiseConfig = NoiseConfig()
    bad_input: BadInputConfig = BadInputConfig()

    @property
    def resolved_n_people(self) -> int:
        if self.n_people is not None:
            return self.n_people
        if self.preset == "custom":
            raise ConfigError("generate.n_people: required when generate.preset is 'custom'")
        return int(PRESETS[self.preset]["n_people"])

    @property
    def resolved_partitions(self) -> int:
        if self.partitions is not None:
            return self.partitions
        return int(PRESETS.get(self.preset, PRESETS["small"])["partitions"])
