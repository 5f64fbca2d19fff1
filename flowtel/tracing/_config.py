"""Every environment variable flowtel reads, with its default. Standard names first."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """Invalid configuration. The message says what to fix."""


@dataclass(frozen=True)
class EnvVar(Generic[T]):
    name: str
    default: T
    parse: Callable[[str], T]
    doc: str

    def get(self) -> T:
        raw = os.environ.get(self.name)
        if raw is None or raw.strip() == "":
            return self.default
        try:
            return self.parse(raw.strip())
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{self.name}={raw!r} is invalid: {exc}. {self.doc}") from None

    def is_set(self) -> bool:
        return bool(os.environ.get(self.name, "").strip())


def _bool(raw: str) -> bool:
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _ratio(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("expected a number between 0.0 and 1.0")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise ValueError("expected a positive number")
    return value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("expected a positive integer")
    return value


MLFLOW_TRACKING_URI = EnvVar(
    "MLFLOW_TRACKING_URI", "", str,
    "Where traces go: an http(s):// MLflow server; unset keeps the embedded local store.",
)
MLFLOW_EXPERIMENT_NAME = EnvVar("MLFLOW_EXPERIMENT_NAME", "", str, "Experiment for new traces, by name.")
MLFLOW_EXPERIMENT_ID = EnvVar("MLFLOW_EXPERIMENT_ID", "", str, "Experiment for new traces, by id.")
MLFLOW_TRACE_SAMPLING_RATIO = EnvVar(
    "MLFLOW_TRACE_SAMPLING_RATIO", 1.0, _ratio, "Fraction of traces recorded, 0.0 to 1.0."
)
FLOWTEL_STORE_PATH = EnvVar(
    "FLOWTEL_STORE_PATH", "flowtel-traces.db", str,
    "Path of the embedded local store (SQLite file), relative to the working directory.",
)
FLOWTEL_TRACE_TIMEOUT_SECONDS = EnvVar(
    "FLOWTEL_TRACE_TIMEOUT_SECONDS", 3600.0, _positive_float,
    "A trace still open after this many seconds is closed as ERROR and delivered.",
)
FLOWTEL_MAX_QUEUED_TRACES = EnvVar(
    "FLOWTEL_MAX_QUEUED_TRACES", 10_000, _positive_int,
    "Finished traces waiting for delivery, per destination, before the overflow policy applies.",
)
FLOWTEL_EXPORT_BATCH_SIZE = EnvVar(
    "FLOWTEL_EXPORT_BATCH_SIZE", 100, _positive_int, "Traces per export request at most."
)
FLOWTEL_SHUTDOWN_TIMEOUT_SECONDS = EnvVar(
    "FLOWTEL_SHUTDOWN_TIMEOUT_SECONDS", 10.0, _positive_float,
    "How long the exit-time drain may take before it reports what it could not send.",
)
FLOWTEL_MAX_OPEN_TRACES = EnvVar(
    "FLOWTEL_MAX_OPEN_TRACES", 100_000, _positive_int,
    "Traces in progress held in memory at most; new traces past it are dropped and counted.",
)
