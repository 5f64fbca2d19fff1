"""With nothing configured, traces land in the embedded store; the CLI shows them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import flowtel
from flowtel.cli import main as cli_main


@pytest.fixture
def ticking_clock() -> Iterator[None]:
    """Traces started within one millisecond sort by id; a clock that ticks 1 ms per reading
    makes the newest-first order of these tests deterministic."""
    from flowtel.tracing import _deterministic

    with _deterministic(seed=99, start_ns=1_790_000_000_000_000_000):
        yield


@flowtel.trace(span_type="TOOL")
def lookup(city: str) -> str:
    return f"Sunny in {city}"


@flowtel.trace(span_type="AGENT")
def agent(question: str) -> str:
    flowtel.update_current_trace(tags={"app": "demo"}, session_id="s-9")
    return lookup("Paris")


@flowtel.trace
def broken() -> None:
    raise ValueError("kaput")


def test_default_destination_is_the_local_store(local_store_path: str) -> None:
    agent("Weather?")
    trace_id = flowtel.get_last_active_trace_id()
    assert trace_id is not None
    flowtel.flush()
    assert Path(local_store_path).exists()
    assert oct(Path(local_store_path).stat().st_mode & 0o777) == oct(0o600)
    trace = flowtel.get_trace(trace_id)
    assert trace is not None
    assert [s.name for s in trace.data.spans] == ["agent", "lookup"]
    assert trace.info.tags["app"] == "demo"
    assert trace.info.trace_metadata["mlflow.trace.session"] == "s-9"


def test_get_trace_right_after_the_call(local_store_path: str) -> None:
    agent("Weather?")
    trace = flowtel.get_trace(flowtel.get_last_active_trace_id())  # type: ignore[arg-type]
    assert trace is not None and trace.data.spans[0].outputs == "Sunny in Paris"


def test_search_and_tags_on_stored_traces(local_store_path: str, ticking_clock: None) -> None:
    agent("a")
    with pytest.raises(ValueError):
        broken()
    agent("b")
    traces = flowtel.search_traces(return_type="list")
    assert [t.info.tags["mlflow.traceName"] for t in traces] == ["agent", "broken", "agent"]
    errors = flowtel.search_traces(filter_string="status = 'ERROR'", return_type="list")
    assert [t.info.tags["mlflow.traceName"] for t in errors] == ["broken"]
    first = traces[-1].info.trace_id
    flowtel.set_trace_tag(first, "reviewed", "yes")
    tagged = flowtel.search_traces(filter_string="tags.reviewed = 'yes'", return_type="list")
    assert [t.info.trace_id for t in tagged] == [first]
    flowtel.delete_trace_tag(first, "reviewed")
    assert "reviewed" not in flowtel.get_trace(first).info.tags  # type: ignore[union-attr]
    limited = flowtel.search_traces(max_results=2, return_type="list", include_spans=False)
    assert len(limited) == 2 and limited[0].data.spans == []


def test_search_returns_pandas_by_default(local_store_path: str) -> None:
    agent("a")
    frame = flowtel.search_traces()
    assert list(frame["trace_id"]) == [flowtel.get_last_active_trace_id()]
    assert frame["request"][0] == {"question": "a"}


def test_unknown_trace_and_bad_filter_are_clear_errors(local_store_path: str, caplog: pytest.LogCaptureFixture) -> None:
    agent("a")
    assert flowtel.get_trace("tr-" + "0" * 32) is None
    assert "not found" in caplog.text
    with pytest.raises(flowtel.FlowtelException) as info:
        flowtel.search_traces(filter_string="status = 'OK' OR status = 'ERROR'", return_type="list")
    assert "OR" in str(info.value)
    with pytest.raises(flowtel.FlowtelException):
        flowtel.set_trace_tag("tr-" + "f" * 32, "k", "v")


def test_mlflow_database_uri_is_refused() -> None:
    with pytest.raises(flowtel.ConfigError, match="MLflow's own backend store"):
        flowtel.set_tracking_uri("sqlite:///mlflow.db")
    with pytest.raises(flowtel.ConfigError, match="not supported"):
        flowtel.set_tracking_uri("file:///tmp/mlruns")


def test_env_uri_that_cannot_be_served_fails_at_configure_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    with pytest.raises(flowtel.ConfigError, match="never writes into"):
        flowtel.get_tracking_uri()


# -- CLI -----------------------------------------------------------------------------------------
def test_cli_list_show_export(local_store_path: str, capsys: pytest.CaptureFixture[str], ticking_clock: None) -> None:
    agent("Weather?")
    with pytest.raises(ValueError):
        broken()
    ok_id = flowtel.search_traces(filter_string="status = 'OK'", return_type="list")[0].info.trace_id
    flowtel.flush()
    capsys.readouterr()

    assert cli_main(["--store", local_store_path, "traces", "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split() == ["TRACE", "ID", "NAME", "STATE", "DURATION", "TOKENS", "COST", "SESSION", "STARTED"]
    assert "broken" in listing[1] and "ERROR" in listing[1]
    assert "agent" in listing[2] and "OK" in listing[2]

    assert cli_main(["--store", local_store_path, "traces", "show", ok_id]) == 0
    shown = capsys.readouterr().out
    assert f"Trace {ok_id}" in shown
    assert "agent [AGENT]" in shown and "└─ ✓ lookup [TOOL]" in shown
    assert 'out: Sunny in Paris' in shown

    assert cli_main(["--store", local_store_path, "traces", "show", "latest"]) == 0
    assert "error: ValueError: kaput" in capsys.readouterr().out

    assert cli_main(["--store", local_store_path, "traces", "export", ok_id]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert flowtel.Trace.from_dict(exported).info.trace_id == ok_id


def test_cli_messages_for_unknown_id_and_empty_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "none.db")
    assert cli_main(["--store", missing, "traces", "list"]) == 1
    assert "no traces yet" in capsys.readouterr().err


def test_cli_unknown_id(local_store_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    agent("x")
    flowtel.flush()
    assert cli_main(["--store", local_store_path, "traces", "show", "tr-nope"]) == 1
    assert "no trace with id 'tr-nope'" in capsys.readouterr().err


def test_several_processes_write_the_same_store(tmp_path: Path) -> None:
    store = tmp_path / "shared.db"
    script = (
        "import flowtel\n"
        "@flowtel.trace\n"
        "def work(i): return i\n"
        "for i in range(20): work(i)\n"
        "flowtel.flush()\n"
    )
    env = {**os.environ, "FLOWTEL_STORE_PATH": str(store)}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env) for _ in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    out = subprocess.run(
        [sys.executable, "-m", "flowtel", "--store", str(store), "traces", "list", "--limit", "500"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert len(out.strip().splitlines()) == 1 + 80


def test_invalid_env_setting_met_while_tracing_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    flowtel.tracing.reset()
    assert agent("still works") == "Sunny in Paris"
    assert agent("twice") == "Sunny in Paris"
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert "flowtel is not recording traces" in errors[0].getMessage()
    assert "never writes into" in errors[0].getMessage()
    assert flowtel.get_delivery_stats()["internal_errors"] == {}
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    flowtel.tracing.reset()
