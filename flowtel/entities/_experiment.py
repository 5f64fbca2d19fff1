"""An MLflow experiment: where traces are filed."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Experiment"]


@dataclass(frozen=True)
class Experiment:
    """An experiment, as returned by :func:`flowtel.set_experiment`.

    Args:
        experiment_id: The experiment id (a string).
        name: The experiment name.
        artifact_location: Where the server stores its artifacts, if it said.
        lifecycle_stage: ``"active"`` or ``"deleted"``.
        tags: Experiment tags.
        creation_time: Epoch milliseconds, if known.
        last_update_time: Epoch milliseconds, if known.
    """

    experiment_id: str
    name: str
    artifact_location: str | None = None
    lifecycle_stage: str = "active"
    tags: dict[str, str] = field(default_factory=dict)
    creation_time: int | None = None
    last_update_time: int | None = None
