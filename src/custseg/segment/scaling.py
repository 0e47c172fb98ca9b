"""Scaling step of the segmentation pipeline: signed log1p on heavy tails, then z-scores.

Money and counts are heavy-tailed: a few customers with 100x the median would own the
squared-distance cost. ``logCols`` get ``sign(x) * log1p(|x|)`` (log1p for the usual
non-negative columns, and still defined for net amounts and margins that go negative),
then every input column is standardised with the mean and population standard deviation
of the fitted data. The fitted means and deviations are saved with the model, so scoring
later applies exactly the training scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCols, HasOutputCols
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from custseg.segment.persist import ModelDataPersistence


def signed_log1p(column: Column) -> Column:
    """sign(x) * ln(1 + |x|): log1p for x >= 0, odd around 0."""
    return F.signum(column) * F.log1p(F.abs(column))


class _ScalerParams(HasInputCols, HasOutputCols):
    logCols: Param[list[str]] = Param(
        Params._dummy(),
        "logCols",
        "input columns given a signed log1p before scaling",
        TypeConverters.toListString,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(logCols=[])

    def _pairs(self) -> list[tuple[str, str]]:
        inputs = self.getInputCols()
        outputs = self.getOutputCols() if self.isDefined(self.outputCols) else [f"z_{c}" for c in inputs]
        if len(outputs) != len(inputs):
            raise ValueError(f"LogStandardScaler: {len(inputs)} inputCols but {len(outputs)} outputCols")
        return list(zip(inputs, outputs, strict=True))

    def _logged(self, name: str) -> Column:
        value = F.col(name).cast("double")
        return signed_log1p(value) if name in self.getOrDefault(self.logCols) else value


class LogStandardScaler(Estimator["LogStandardScalerModel"], _ScalerParams, ModelDataPersistence):
    """Fits the mean and standard deviation of every (logged) input column in one pass."""

    _input_kwargs: dict[str, Any]

    @keyword_only
    def __init__(
        self,
        *,
        inputCols: Sequence[str] = (),
        outputCols: Sequence[str] | None = None,
        logCols: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        inputCols: Sequence[str] = (),
        outputCols: Sequence[str] | None = None,
        logCols: Sequence[str] = (),
    ) -> LogStandardScaler:
        kwargs = {k: list(v) for k, v in self._input_kwargs.items() if v is not None}
        return self._set(**kwargs)

    def _fit(self, dataset: DataFrame) -> LogStandardScalerModel:
        pairs = self._pairs()
        missing = [c for c, _ in pairs if c not in dataset.columns]
        unknown = [c for c in self.getOrDefault(self.logCols) if c not in self.getInputCols()]
        if missing or unknown:
            raise ValueError(
                f"LogStandardScaler: input has no column(s) {missing}; logCols not among inputCols: {unknown}"
            )
        row = dataset.agg(
            *[F.avg(self._logged(c)).alias(f"m{i}") for i, (c, _) in enumerate(pairs)],
            *[F.stddev_pop(self._logged(c)).alias(f"s{i}") for i, (c, _) in enumerate(pairs)],
            *[F.count_if(F.col(c).isNull()).alias(f"n{i}") for i, (c, _) in enumerate(pairs)],
        ).first()
        assert row is not None
        nulls = {c: row[f"n{i}"] for i, (c, _) in enumerate(pairs) if row[f"n{i}"]}
        if nulls:
            raise ValueError(f"LogStandardScaler: null values in {nulls}; fill them before scaling")
        means = [float(row[f"m{i}"] or 0.0) for i in range(len(pairs))]
        stds = [float(row[f"s{i}"] or 0.0) for i in range(len(pairs))]
        model = LogStandardScalerModel(means=means, stds=stds)
        self._copyValues(model)
        return model


class LogStandardScalerModel(Model, _ScalerParams, ModelDataPersistence):
    """Applies the fitted transform; a column with no spread becomes 0."""

    def __init__(self, means: Sequence[float] = (), stds: Sequence[float] = ()) -> None:
        super().__init__()
        self.means, self.stds = list(means), list(stds)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        scaled = {}
        for (source, target), mean, std in zip(self._pairs(), self.means, self.stds, strict=True):
            centred = self._logged(source) - F.lit(mean)
            scaled[target] = centred / F.lit(std) if std > 0 else centred * F.lit(0.0)
        return dataset.withColumns(scaled)

    def _model_data(self) -> dict[str, Any]:
        return {"means": self.means, "stds": self.stds}

    @classmethod
    def _from_model_data(cls, data: dict[str, Any]) -> LogStandardScalerModel:
        return cls(means=data["means"], stds=data["stds"])
