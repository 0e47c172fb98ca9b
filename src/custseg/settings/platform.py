"""Settings every stage shares: Spark, storage, tracking, the run, privacy."""

from __future__ import annotations

from pydantic import Field

from custseg.settings.base import Section


class SparkConfig(Section):
    """How the SparkSession is built (see ``custseg.session``)."""

    master: str | None = Field("local[*]", description="Spark master URL; null leaves it to spark-submit.")
    app_name: str = "custseg"
    driver_memory: str | None = Field(
        "8g", description="Only effective when the session starts the JVM (local mode)."
    )
    shuffle_partitions: int = Field(8, ge=1)
    ui_enabled: bool = True
    checkpoint_dir: str = "./data/checkpoints"
    jars_dir: str | None = Field(
        None,
        description="Folder of Delta jars (from `make jars-mvn`) used instead of resolving "
        "io.delta:delta-spark from Maven Central with Ivy.",
    )
    resolve_delta_package: bool = Field(
        True,
        description="Add io.delta:delta-spark to spark.jars.packages (the delta-spark pip "
        "way). Turn off when the cluster already ships Delta or spark-submit adds it.",
    )
    conf: dict[str, str] = Field(default_factory=dict, description="Extra Spark conf.")


class StorageConfig(Section):
    """Where Delta tables live: ``<warehouse>/<layer>/<table>``."""

    warehouse: str = "./data/warehouse"


class TrackingConfig(Section):
    """MLflow tracking store and experiment."""

    uri: str = "sqlite:///data/mlflow.db"
    experiment: str = "custseg"
    artifact_location: str | None = Field(
        "./data/mlartifacts", description="Artifact root for a new experiment."
    )
    enabled: bool = True


class RunConfig(Section):
    """Settings shared by all stages."""

    seed: int = Field(42, description="Seed for every random step.")
    currency: str = "GBP"
    lease_seconds: int = Field(
        600,
        ge=10,
        description="How long a run's hold on the warehouse (meta.leases) lasts without renewal; "
        "a running pipeline renews it every third of this, so a killed run's hold expires.",
    )
    lease_wait_seconds: int = Field(
        0,
        ge=0,
        description="How long a run waits for another run's hold on the warehouse to end before "
        "stopping with a message naming the holder (0: stop at once).",
    )


_INTERVAL = r"^interval \d+ (hours|days|weeks)$"


class PrivacyConfig(Section):
    """Pseudonymisation, erasure and retention (docs/security.md)."""

    key_env: str = Field(
        "CUSTSEG_PSEUDONYM_KEY",
        description="Environment variable holding the secret key of every pseudonym (HMAC-SHA256 of "
        "identity-derived keys and customer ids).",
    )
    require_key: bool = Field(
        False,
        description="Stop when the key_env variable is not set (conf/cluster.yaml). Off: local mode "
        "creates a random key in key_file, with a warning.",
    )
    key_file: str = Field(
        "./data/pseudonym.key",
        description="Local mode's key when key_env is not set (created once, mode 0600). Losing it "
        "changes every customer id at the next stitch.",
    )
    log_retention: str = Field(
        "interval 30 days",
        pattern=_INTERVAL,
        description="delta.logRetentionDuration of every table: how long the Delta log (time travel "
        "metadata) is kept.",
    )
    deleted_file_retention: str = Field(
        "interval 7 days",
        pattern=_INTERVAL,
        description="delta.deletedFileRetentionDuration of every table: how long files a newer version "
        "replaced stay readable by time travel; VACUUM removes them after that.",
    )
    vacuum_retention_hours: float = Field(
        168.0,
        ge=0,
        description="Retention VACUUM uses in jobs/forget.py (erased rows stay in replaced files, "
        "readable by time travel, for this long). Below 168 Delta's safety check is turned off for "
        "the VACUUM: a reader of an older version at the same time may fail.",
    )
