"""Bad configuration: one clear error when tracing starts, never later on a path that must not
fail (the exit drain, span capture, the delivery worker), never a hang, never a modified file."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import sys
from collections import Counter
from pathlib import Path

import pytest

import flowtel
from flowtel import _config
from flowtel.tracing import _runtime
from tests.hostile._scripts import last_line, run_script

FLOAT_SETTINGS = [s.name for s in _config.all_settings() if s.parse is _config._positive_float]
INT_SETTINGS = [s.name for s in _config.all_settings() if s.parse is _config._positive_int]
HOSTILE_NUMBERS = ["nan", "inf", "-inf", "-1", "0", "abc", "1e400", "0x10"]


@pytest.mark.parametrize("value", HOSTILE_NUMBERS)
@pytest.mark.parametrize("name", FLOAT_SETTINGS + INT_SETTINGS + ["MLFLOW_TRACE_SAMPLING_RATIO"])
def test_every_numeric_setting_refuses_hostile_values_at_start(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(name, value)
    if name == "MLFLOW_TRACE_SAMPLING_RATIO" and value in ("0", "0x10") or (
        name in INT_SETTINGS and value == "0x10"
    ):
        pytest.skip("not hostile for this setting")  # "0" is a valid ratio
    _runtime.reset()

    @flowtel.trace
    def user_code(x: int) -> int:
        return x + 1

    with caplog.at_level(logging.ERROR, logger="flowtel"):
        assert [user_code(i) for i in range(3)] == [1, 2, 3]  # runs, untraced
        assert flowtel.flush(1.0) is True
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors  # one line, once; no tracebacks from later paths
    assert name in errors[0] and "traceback" not in errors[0].lower()


@pytest.mark.parametrize("timeout", [float("inf"), float("nan"), -1.0, 0.0, 1e308, "abc", None])
def test_flush_never_raises_whatever_the_timeout(timeout: object) -> None:
    @flowtel.trace
    def user_code() -> str:
        return "ok"

    user_code()
    result = flowtel.flush(timeout)  # type: ignore[arg-type]
    assert isinstance(result, bool)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("value", ["inf", "abc", "-1", "nan"])
def test_exit_drain_survives_a_setting_changed_after_start(tmp_path: Path, value: str) -> None:
    # Valid at start; then the program itself sets a bad value before exit: the drain uses the
    # default and the queued traces are written.
    store = tmp_path / "t.db"
    proc = run_script(f"""
        import os, flowtel
        @flowtel.trace
        def work(i):
            return i
        for i in range(25):
            work(i)
        os.environ["FLOWTEL_SHUTDOWN_TIMEOUT_SECONDS"] = {value!r}
    """, env={"FLOWTEL_STORE_PATH": str(store), "FLOWTEL_SPOOL_DIR": str(tmp_path / "spool")})
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    count = sqlite3.connect(store).execute("SELECT COUNT(*) FROM traces").fetchone()[0]
    assert count == 25


@pytest.mark.timeout(120)
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_nan_trace_timeout_never_closes_running_traces_nor_spins(tmp_path: Path, value: str) -> None:
    proc = run_script("""
        import flowtel
        @flowtel.trace
        def work():
            return 1
        work()
        print(flowtel.flush(10), flowtel.get_delivery_stats()["timed_out_traces"])
    """, env={"FLOWTEL_TRACE_TIMEOUT_SECONDS": value, "FLOWTEL_STORE_PATH": str(tmp_path / "t.db")})
    assert last_line(proc) == "True 0"
    assert proc.stderr.count("FLOWTEL_TRACE_TIMEOUT_SECONDS") == 1


def _foreign_db(path: Path) -> str:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers (name) VALUES ('ada')")
    conn.commit()
    conn.close()
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.timeout(120)
def test_cli_never_modifies_another_applications_sqlite_file(tmp_path: Path) -> None:
    app_db = tmp_path / "app.db"
    digest = _foreign_db(app_db)
    proc = run_script(f"""
        import sys
        from flowtel.cli import main
        sys.argv = ["flowtel", "--store", {str(app_db)!r}, "traces", "list"]
        try:
            main()
        except SystemExit as exc:
            print("exit", exc.code)
    """)
    assert "not a flowtel trace store" in proc.stderr + proc.stdout
    assert hashlib.sha256(app_db.read_bytes()).hexdigest() == digest
    assert not (tmp_path / "app.db-wal").exists()
    assert sqlite3.connect(app_db).execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_tracing_into_another_applications_sqlite_file_leaves_it_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from flowtel import _errors

    monkeypatch.setattr(_errors, "_listeners", [])
    monkeypatch.setattr(_errors, "_counts", Counter())  # expected errors: not counted for later tests
    app_db = tmp_path / "app.db"
    digest = _foreign_db(app_db)
    monkeypatch.setenv("FLOWTEL_STORE_PATH", str(app_db))
    _runtime.reset()

    @flowtel.trace
    def user_code() -> int:
        return 7

    assert user_code() == 7
    flowtel.flush(10)
    _runtime.reset()
    assert hashlib.sha256(app_db.read_bytes()).hexdigest() == digest
    assert sqlite3.connect(app_db).execute("PRAGMA journal_mode").fetchone()[0] == "delete"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX")
def test_all_settings_have_a_doc_and_a_default_that_parses() -> None:
    for setting in _config.all_settings():
        assert setting.doc, setting.name
        if isinstance(setting.default, str) and setting.default:
            assert setting.parse(setting.default) == setting.default
