"""Behavioural segmentation: k-prototypes on Spark, scaling, selection and validation."""

from custseg.segment.kprototypes import KPrototypes, KPrototypesModel, KPrototypesSummary
from custseg.segment.scaling import LogStandardScaler, LogStandardScalerModel

__all__ = [
    "KPrototypes",
    "KPrototypesModel",
    "KPrototypesSummary",
    "LogStandardScaler",
    "LogStandardScalerModel",
]
