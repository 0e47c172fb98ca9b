"""One typed, frozen configuration for every stage, loaded from YAML with overlays.

A config file may name a base file with ``extends: other.yaml`` (relative to itself); the
base is loaded first and the file's keys are merged over it. ``--set a.b.c=value``
overrides are applied last; their values are parsed as YAML (``true``, ``3``, ``[1, 2]``).
String values may reference environment variables as ``${NAME}`` so that secrets never
live in ``conf/``. What is logged (MLflow params, the ``config.yaml`` artifact) is
``Config.loggable()``: the config as written, ``${NAME}`` left unexpanded, with secrets
redacted (``redact``; docs/security.md).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    PrivateAttr,
    ValidationError,
    model_validator,
)

from custseg.settings.base import ConfigError, Section
from custseg.settings.clv import ClvConfig
from custseg.settings.features import FeaturesConfig
from custseg.settings.generate import PRESETS, BadInputConfig, GenerateConfig, NoiseConfig
from custseg.settings.ingest import IngestConfig, SourceConfig
from custseg.settings.insights import (
    SEGMENT_SELECTORS,
    ConditionConfig,
    InsightsConfig,
    RuleConfig,
    ScenarioConfig,
    ScenarioKind,
)
from custseg.settings.platform import PrivacyConfig, RunConfig, SparkConfig, StorageConfig, TrackingConfig
from custseg.settings.report import ReportConfig
from custseg.settings.segment import SEGMENT_DERIVED, SEGMENT_NUMERIC, SegmentConfig
from custseg.settings.stitch import StitchConfig, SurvivorshipRule

_Section = Section

__all__ = [
    "PRESETS",
    "SEGMENT_DERIVED",
    "SEGMENT_NUMERIC",
    "SEGMENT_SELECTORS",
    "BadInputConfig",
    "ClvConfig",
    "ConditionConfig",
    "Config",
    "ConfigError",
    "FeaturesConfig",
    "GenerateConfig",
    "IngestConfig",
    "InsightsConfig",
    "NoiseConfig",
    "PrivacyConfig",
    "ReportConfig",
    "RuleConfig",
    "RunConfig",
    "ScenarioConfig",
    "ScenarioKind",
    "SegmentConfig",
    "SourceConfig",
    "SparkConfig",
    "StitchConfig",
    "StorageConfig",
    "SurvivorshipRule",
    "TrackingConfig",
    "flatten",
    "is_secret_key",
    "load_config",
    "paths_under",
    "redact",
    "redact_text",
]


class Config(_Section):
    """The whole configuration."""

    spark: SparkConfig = SparkConfig()
    storage: StorageConfig = StorageConfig()
    tracking: TrackingConfig = TrackingConfig()
    run: RunConfig = RunConfig()
    generate: GenerateConfig = GenerateConfig()
    ingest: IngestConfig = IngestConfig()
    stitch: StitchConfig = StitchConfig()
    features: FeaturesConfig = FeaturesConfig()
    segment: SegmentConfig = SegmentConfig()
    clv: ClvConfig = ClvConfig()
    insights: InsightsConfig = InsightsConfig()
    report: ReportConfig = ReportConfig()
    privacy: PrivacyConfig = PrivacyConfig()

    # (path) -> value as written, for values that referenced ${NAME} (see loggable())
    _written: dict[tuple[str, ...], Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _check_invariants(self) -> Config:
        if self.generate.preset == "custom" and self.generate.n_people is None:
            raise ValueError("generate.n_people is required when generate.preset is 'custom'")
        if self.insights.window_days not in self.features.windows_days:
            raise ValueError(
                f"insights.window_days ({self.insights.window_days}) must be one of features.windows_days "
                f"{self.features.windows_days}"
            )
        return self

    def flat(self) -> dict[str, Any]:
        """The config as ``{"a.b.c": value}`` (values expanded: not for logging)."""
        return flatten(self.model_dump(mode="json"))

    def loggable(self) -> dict[str, Any]:
        """The config as written, for MLflow: ``${NAME}`` references unexpanded and every
        secret redacted (``redact``)."""
        tree: dict[str, Any] = self.model_dump(mode="json")
        for path, written in self._written.items():
            node: Any = tree
            for part in path[:-1]:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict) and path[-1] in node:
                node[path[-1]] = written
        out: dict[str, Any] = redact(tree)
        return out


def paths_under(root: str | os.PathLike[str]) -> list[str]:
    """``--set`` overrides that keep every path a run writes under ``root`` (warehouse,
    MLflow store and artifacts, generated files, checkpoints, reports, pseudonym key):
    the tests and ``bench/same_tables.py`` run in folders of their own this way."""
    tmp = Path(root)
    return [
        f"storage.warehouse={tmp / 'warehouse'}",
        f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",
        f"tracking.artifact_location={tmp / 'mlartifacts'}",
        f"generate.output_dir={tmp / 'generated'}",
        f"spark.checkpoint_dir={tmp / 'checkpoints'}",
        f"report.dir={tmp / 'reports'}",
        f"privacy.key_file={tmp / 'pseudonym.key'}",
    ]


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into dotted keys."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# A key naming a secret: its value is never logged nor echoed in an error.
SECRET_NAME = re.compile(
    r"(?i)(password|passwd|pwd|secret|token|credential|keytab|signature|api_?key|access[._-]?key|"
    r"private[._-]?key|account[._-]?key|(^|[._-])key([._-]|$))"
)
# names that hold the name of a variable or a path, never a secret
_NOT_SECRET = re.compile(r"(?i)(_env|^key_env|^key_file|^require_key)$")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")
# a URL, JDBC or connection-string parameter naming a secret (access_token=, AccountKey=,
# X-Amz-Signature=, sig=, user=, ...): its value is redacted
_SECRET_PARAM = re.compile(
    r"(?i)([A-Za-z0-9_.-]*(?:password|passwd|pwd|secret|token|key|sig|signature|credential|user|username)"
    r"[A-Za-z0-9_.-]*)=[^&;,\s]*"
)
REDACTED = "***"


def redact_text(text: str) -> str:
    """``text`` with a URI's user info and secret query parameters (``password=...``)
    replaced by ``***``: for any value that may be a URL (tracking URI, JDBC URL)."""
    text = _USERINFO.sub(rf"\1{REDACTED}@", text)
    return _SECRET_PARAM.sub(lambda m: f"{m.group(1)}={REDACTED}", text)


def is_secret_key(path: Sequence[Any]) -> bool:
    """Whether a config path names a secret: a key in it matches ``SECRET_NAME``, or it is
    a reader option of a source (JDBC options carry credentials)."""
    names = [str(p) for p in path]
    if names and _NOT_SECRET.search(names[-1]):
        return False
    if any(SECRET_NAME.search(n) for n in names):
        return True
    return "options" in names[:-1] and names[0] == "ingest"


def redact(tree: Any, path: tuple[str, ...] = ()) -> Any:
    """A copy of a config tree with secrets replaced by ``***`` (``is_secret_key``) and
    URIs' user info and secret parameters removed (``redact_text``)."""
    if isinstance(tree, Mapping):
        return {k: redact(v, (*path, str(k))) for k, v in tree.items()}
    if isinstance(tree, list):
        return [redact(v, path) for v in tree]
    if path and is_secret_key(path) and tree not in (None, "", {}, []):
        return REDACTED
    return redact_text(tree) if isinstance(tree, str) else tree


def _expand_env(value: Any, source: str, key: str) -> Any:
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"{source}: key '{key}': environment variable ${{{name}}} is not set")
            return os.environ[name]

        return _ENV_REF.sub(repl, value)
    if isinstance(value, dict):
        return {k: _expand_env(v, source, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, source, key) for v in value]
    return value


def _read_yaml(path: Path, chain: Sequence[Path] = ()) -> list[tuple[str, dict[str, Any]]]:
    """The file and its ``extends`` ancestors as (source, mapping), base first."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    if path.resolve() in [p.resolve() for p in chain]:
        raise ConfigError(f"{path}: 'extends' forms a cycle")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        # the position and the problem, never the offending line (it may hold a secret)
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    base = data.pop("extends", None)
    layers: list[tuple[str, dict[str, Any]]] = []
    if base is not None:
        layers.extend(_read_yaml(path.parent / str(base), [*chain, path]))
    layers.append((str(path), data))
    return layers


def _record_written(value: Any, path: tuple[str, ...], written: dict[tuple[str, ...], Any]) -> None:
    """Remember, by path, every value under ``path`` that references ``${NAME}``, as written
    (what is logged instead of the expanded value); forget what an earlier layer set there."""
    for old in [p for p in written if p[: len(path)] == path]:
        del written[old]
    if isinstance(value, Mapping):
        for k, v in value.items():
            _record_written(v, (*path, str(k)), written)
    elif _ENV_REF.search(str(value)):
        written[path] = value


def _merge(
    target: dict[str, Any],
    layer: Mapping[str, Any],
    source: str,
    provenance: dict[str, str],
    written: dict[tuple[str, ...], Any],
    path: tuple[str, ...] = (),
) -> None:
    for key, value in layer.items():
        here = (*path, str(key))
        dotted = ".".join(here)
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value, source, provenance, written, here)
        else:
            _record_written(value, here, written)
            target[key] = _expand_env(value, source, dotted)
        provenance[dotted] = source


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError("--set: expected KEY=VALUE, e.g. spark.master=local[2]")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {key.strip()!r}: empty key segment")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return parts, value


def _describe_error(err: Mapping[str, Any], provenance: Mapping[str, str], default: str) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    source = default
    # The most specific key (or its nearest parent) that a file or override set.
    parts = loc.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in provenance:
            source = provenance[".".join(parts[:i])]
            break
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{source}: unknown key '{loc}'"
    got = err.get("input")
    # never a secret, nor a whole mapping or list (a source entry may hold a password)
    if is_secret_key(parts) or isinstance(got, Mapping | list):
        shown = f"a {type(got).__name__}"
    else:
        shown = repr(redact_text(got)) if isinstance(got, str) else repr(got)
    return f"{source}: key '{loc}': {redact_text(str(err['msg']))} (got {shown})"


def load_config(path: str | os.PathLike[str] | None = None, overrides: Iterable[str] = ()) -> Config:
    """Load and validate the config.

    Args:
        path: a YAML file (its ``extends`` chain is followed); None gives the built-in
            defaults, which equal ``conf/local.yaml``.
        overrides: ``a.b.c=value`` strings applied last.

    Returns:
        The frozen, validated ``Config``.

    Raises:
        ConfigError: naming the file (or ``--set``), the key and what was expected.
    """
    merged: dict[str, Any] = {}
    provenance: dict[str, str] = {}
    written: dict[tuple[str, ...], Any] = {}
    layers = _read_yaml(Path(path)) if path is not None else []
    for source, layer in layers:
        _merge(merged, layer, source, provenance, written)
    for text in overrides:
        parts, value = _parse_override(text)
        _record_written(None, tuple(parts), written)
        node = merged
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
        provenance[".".join(parts)] = f"--set {'.'.join(parts)}"  # the key: a value may be a secret
    default_source = layers[-1][0] if layers else "defaults"
    try:
        cfg = Config.model_validate(merged)
    except ValidationError as exc:
        messages = [_describe_error(e, provenance, default_source) for e in exc.errors()]
        raise ConfigError("; ".join(messages)) from None
    cfg._written = written
    return cfg
