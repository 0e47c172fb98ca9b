"""Save and load for custseg's Python pyspark.ml stages.

pyspark.ml's own ``DefaultParamsWriter`` writes a stage's params as one JSON metadata file;
a fitted model's data here is k-sized (centres, modes, means), so it rides in the same
file as ``extraMetadata`` instead of a separate Parquet data folder. The format is
pyspark.ml's, so a ``Pipeline`` of these stages and Spark's own stages saves and loads
with ``PipelineModel.save`` / ``PipelineModel.load`` (and therefore ``mlflow.spark``).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pyspark.ml.util import (
    DefaultParamsReader,
    DefaultParamsWriter,
    MLReadable,
    MLReader,
    MLWritable,
    MLWriter,
)

P = TypeVar("P", bound=Any)


class ModelDataWriter(MLWriter):
    """Writes params plus the instance's ``_model_data()`` dict into the metadata."""

    def __init__(self, instance: Any) -> None:
        super().__init__()
        self.instance = instance

    def saveImpl(self, path: str) -> None:
        DefaultParamsWriter.saveMetadata(
            self.instance, path, self.sparkSession, extraMetadata={"data": self.instance._model_data()}
        )


class ModelDataReader(MLReader[Any], Generic[P]):
    """Reads what ``ModelDataWriter`` wrote: ``cls._from_model_data(data)`` plus the params."""

    def __init__(self, cls: type[P]) -> None:
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> P:
        metadata = DefaultParamsReader.loadMetadata(path, self.sparkSession)
        instance: P = self.cls._from_model_data(metadata["data"])  # type: ignore[attr-defined]
        DefaultParamsReader.getAndSetParams(instance, metadata)  # type: ignore[type-var]
        instance._resetUid(metadata["uid"])
        return instance


class ModelDataPersistence(MLWritable, MLReadable[Any]):
    """``write()``/``read()`` through the two classes above. An estimator keeps the empty
    data; a model overrides ``_model_data`` and ``_from_model_data``."""

    def write(self) -> ModelDataWriter:
        return ModelDataWriter(self)

    @classmethod
    def read(cls) -> ModelDataReader[Any]:
        return ModelDataReader(cls)

    def _model_data(self) -> dict[str, Any]:
        return {}

    @classmethod
    def _from_model_data(cls, data: dict[str, Any]) -> Any:
        return cls()
