from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


class TraceLocationType(str, Enum):
    TRACE_LOCATION_TYPE_UNSPECIFIED = "TRACE_LOCATION_TYPE_UNSPECIFIED"
    MLFLOW_EXPERIMENT = "MLFLOW_EXPERIMENT"
    INFERENCE_TABLE = "INFERENCE_TABLE"


@dataclass
class MlflowExperimentLocation:
    """A trace stored in an MLflow experiment."""

    experiment_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"experiment_id": self.experiment_id}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MlflowExperimentLocation:
        return cls(experiment_id=d["experiment_id"])


@dataclass
class InferenceTableLocation:
    """A trace stored in a Databricks inference table (read support only)."""

    full_table_name: str

    def to_dict(self) -> dict[str, Any]:
        return {"full_table_name": self.full_table_name}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InferenceTableLocation:
        return cls(full_table_name=d["full_table_name"])


@dataclass
class TraceLocation:
    """Where a trace is stored."""

    type: TraceLocationType
    mlflow_experiment: MlflowExperimentLocation | None = None
    inference_table: InferenceTableLocation | None = None

    def __post_init__(self) -> None:
        self.type = TraceLocationType(self.type)
        if self.mlflow_experiment is not None and self.inference_table is not None:
            raise ValueError("Only one of mlflow_experiment or inference_table can be provided.")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type.value}
        if self.mlflow_experiment:
            d["mlflow_experiment"] = self.mlflow_experiment.to_dict()
        elif self.inference_table:
            d["inference_table"] = self.inference_table.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TraceLocation:
        exp = d.get("mlflow_experiment")
        table = d.get("inference_table")
        return cls(
            type=TraceLocationType(d.get("type", "TRACE_LOCATION_TYPE_UNSPECIFIED")),
            mlflow_experiment=MlflowExperimentLocation.from_dict(exp) if exp else None,
            inference_table=InferenceTableLocation.from_dict(table) if table else None,
        )

    @classmethod
    def from_experiment_id(cls, experiment_id: str) -> TraceLocation:
        return cls(
            type=TraceLocationType.MLFLOW_EXPERIMENT,
            mlflow_experiment=MlflowExperimentLocation(experiment_id=str(experiment_id)),
        )
