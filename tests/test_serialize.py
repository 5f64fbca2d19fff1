"""Tests for flowtel.tracing._serialize: span attribute values as (MLflow-compatible) JSON strings."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import subprocess
import sys
import textwrap
import threading
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowtel.tracing import _serialize
from flowtel.tracing._serialize import (
    CYCLE_MARKER,
    DEFAULT_LIMITS,
    REDACTED,
    CaptureLimits,
    dump_json,
    is_sensitive_key,
    redact_text,
    to_jsonable,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SMALL = CaptureLimits(max_attribute_bytes=2_000, max_depth=6, max_items=8, max_string_chars=120)


@pytest.fixture(autouse=True)
def _no_internal_errors(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[BaseException]]:
    """Bad user data must be recorded safely, never reported as a flowtel internal error."""
    reported: list[BaseException] = []
    monkeypatch.setattr(_serialize, "_report_internal_error", reported.append)
    yield reported
    assert not reported, f"unexpected internal errors: {reported!r}"


def roundtrip(value: object, limits: CaptureLimits = DEFAULT_LIMITS) -> Any:
    """dump_json, checked to be valid UTF-8 JSON within the byte limit, parsed back."""
    text = dump_json(value, limits)
    assert isinstance(text, str)
    assert len(text.encode("utf-8")) <= limits.max_attribute_bytes
    return json.loads(text)


def depth_of(value: Any) -> int:
    """Number of nested containers in a parsed JSON value."""
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


def assert_within_limits(parsed: Any, limits: CaptureLimits) -> None:
    """Per-node limits hold on a parsed output (markers add one entry / a short suffix)."""
    assert depth_of(parsed) <= limits.max_depth
    stack = [parsed]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            assert len(node) <= limits.max_items + 1
            assert all(len(key) <= limits.max_string_chars + 60 for key in node)
            stack.extend(node.values())
        elif isinstance(node, list):
            assert len(node) <= limits.max_items + 1
            stack.extend(node)
        elif isinstance(node, str):
            assert len(node) <= limits.max_string_chars + 60


# --------------------------------------------------------------------------------------------------
# Fast path / MLflow compatibility
# --------------------------------------------------------------------------------------------------

CHAT = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "héllo " * 80}, {"role": "assistant", "content": "ok"}],
    "temperature": 0.2,
    "max_tokens": 256,
    "stop": None,
    "stream": False,
    "tags": ("a", "b"),
}


@pytest.mark.parametrize(
    "value",
    [
        {"question": "What is the capital of France?", "k": 3},
        CHAT,
        "just a string",
        "",
        42,
        -1.5,
        True,
        None,
        [],
        {},
        [1, [2, [3, {"a": None}]]],
        {"nan": math.nan, "inf": math.inf, "ninf": -math.inf},
        "emoji 🎉 and ünïcödé",
    ],
)
def test_plain_values_are_encoded_exactly_like_json_dumps(value: object) -> None:
    assert dump_json(value) == json.dumps(value, ensure_ascii=False)


def test_non_finite_floats_use_mlflow_tokens() -> None:
    assert dump_json([math.nan, math.inf, -math.inf]) == "[NaN, Infinity, -Infinity]"
    assert dump_json({"x": [math.inf]}, SMALL) == '{"x": [Infinity]}'  # fast and slow paths agree
    parsed = to_jsonable({"n": math.nan, "when": dt.date(2024, 1, 2)})
    assert math.isnan(parsed["n"]) and parsed["when"] == "2024-01-02"


def test_matches_mlflow_for_plain_values_and_simple_models() -> None:
    mlflow_utils = pytest.importorskip("mlflow.tracing.utils")
    pydantic = pytest.importorskip("pydantic")

    class Message(pydantic.BaseModel):
        role: str
        content: str
        score: float | None = None

    values = (CHAT, [1, "two", 3.0, None], Message(role="user", content="hi"), {"m": [Message(role="a", content="b")]})
    for value in values:
        assert dump_json(value) == mlflow_utils.dump_span_attribute_value(value)


def test_importing_does_not_import_optional_libraries() -> None:
    code = textwrap.dedent(
        """
        import sys
        import flowtel.tracing  # whatever the package itself needs
        before = set(sys.modules)
        import flowtel.tracing._serialize as s
        s.dump_json({"a": [1, {"b": b"x"}]})
        heavy = {"numpy", "pandas", "pydantic", "attrs", "attr", "openai", "anthropic"}
        print(sorted((set(sys.modules) - before) & heavy))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------------
# Redaction
# --------------------------------------------------------------------------------------------------

SENSITIVE_KEYS = [
    "api_key", "apiKey", "APIKEY", "x-api-key", "X-Api-Key", "openai_api_key", "authorization",
    "Authorization", "proxy-authorization", "password", "db_password", "passwd", "secret",
    "client_secret", "token", "access_token", "accessToken", "refresh_token", "id_token", "cookie",
    "Cookie", "set-cookie", "Set-Cookie", "session_token", "private_key", "credential", "credentials",
    "aws_secret_access_key", "auth", "csrf_token", "bearer_token", "Ocp-Apim-Subscription-Key",
    "azure_ad_token", "api_token", "x-goog-api-key",
]  # fmt: skip
ORDINARY_KEYS = [
    "max_tokens", "maxTokens", "input_tokens", "output_tokens", "total_tokens", "prompt_tokens",
    "completion_tokens", "tokens", "token_usage", "tokenUsage", "token_count", "num_tokens",
    "max_completion_tokens", "eos_token", "pad_token", "next_page_token", "token_type", "tokenizer",
    "key", "keys", "author", "session_id", "secretary_name", "passage", "api_base", "model",
]  # fmt: skip


@pytest.mark.parametrize("key", SENSITIVE_KEYS)
def test_credential_like_keys_are_redacted(key: str) -> None:
    assert is_sensitive_key(key)
    assert roundtrip({key: "s3cr3t", "other": 1}) == {key: REDACTED, "other": 1}


@pytest.mark.parametrize("key", ORDINARY_KEYS)
def test_usage_counts_and_ordinary_keys_are_not_redacted(key: str) -> None:
    assert not is_sensitive_key(key)
    value = {key: 1234, "nested": {key: "visible"}}
    assert roundtrip(value) == value


def test_redaction_applies_at_any_depth_and_to_any_value_type() -> None:
    value = {
        "request": {"headers": {"Authorization": "Bearer sk-1", "Accept": "json"}},
        "clients": [{"api_key": "sk-2", "credentials": {"user": "u", "password": "p"}}],
        "auth": ("user", "pass"),
    }
    assert roundtrip(value) == {
        "request": {"headers": {"Authorization": REDACTED, "Accept": "json"}},
        "clients": [{"api_key": REDACTED, "credentials": REDACTED}],
        "auth": REDACTED,
    }
    text = dump_json(value)
    assert "sk-1" not in text and "sk-2" not in text and "pass" not in text


def test_redaction_in_objects_and_none_is_kept() -> None:
    @dataclasses.dataclass
    class Config:
        model: str
        api_key: str | None

    assert roundtrip(Config("gpt", "sk-3")) == {"model": "gpt", "api_key": REDACTED}
    assert roundtrip(Config("gpt", None)) == {"model": "gpt", "api_key": None}


def test_credentials_in_object_reprs_are_redacted() -> None:
    class Client:
        def __repr__(self) -> str:
            return (
                "Client(base_url='https://api', api_key='sk-live-123', max_tokens=5,"
                " headers={'Authorization': 'Bearer abcdef123456'})"
            )

    text = dump_json({"client": Client()})
    assert "sk-live-123" not in text and "abcdef123456" not in text
    assert "base_url='https://api'" in text and "max_tokens=5" in text
    assert roundtrip(Client(), CaptureLimits(redact=False)) == repr(Client())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("password='two words' user=bob", f"password='{REDACTED}' user=bob"),
        ('{"token": "t0k", "tokens": 12}', f'{{"token": "{REDACTED}", "tokens": 12}}'),
        ("x-api-key: abc; next_page_token=p2", f"x-api-key: {REDACTED}; next_page_token=p2"),
        ("no credentials here: just text", "no credentials here: just text"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_redaction_can_be_disabled() -> None:
    limits = CaptureLimits(redact=False)
    assert roundtrip({"api_key": "sk-4"}, limits) == {"api_key": "sk-4"}


def test_non_string_keys_are_normalised_before_the_sensitivity_check() -> None:
    class Header(enum.Enum):
        AUTH = "Authorization"

    assert roundtrip({Header.AUTH: "Bearer x"}) == {"Authorization": REDACTED}


# --------------------------------------------------------------------------------------------------
# Types
# --------------------------------------------------------------------------------------------------


def test_pydantic_v2_models_use_json_mode() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Inner(pydantic.BaseModel):
        when: dt.datetime
        tags: set[str]

    class Outer(pydantic.BaseModel):
        name: str
        inner: Inner
        secret: pydantic.SecretStr
        delay: dt.timedelta

    model = Outer(
        name="n",
        inner=Inner(when=dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), tags={"b"}),
        secret=pydantic.SecretStr("hunter2"),
        delay=dt.timedelta(seconds=1.5),
    )
    assert roundtrip(model) == {
        "name": "n",
        "inner": {"when": "2024-01-02T03:04:05Z", "tags": ["b"]},
        "secret": REDACTED,
        "delay": "PT1.5S",
    }


def test_pydantic_v2_model_with_arbitrary_types_falls_back_to_python_mode() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Opaque:
        def __str__(self) -> str:
            return "opaque!"

    class Model(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
        thing: Opaque
        data: bytes

    assert roundtrip(Model(thing=Opaque(), data=b"\xff\x00")) == {"thing": "opaque!", "data": "[binary 2 bytes]"}


def test_pydantic_v1_models() -> None:
    v1 = pytest.importorskip("pydantic.v1")

    class Old(v1.BaseModel):
        a: int
        b: list[str]

    assert roundtrip(Old(a=1, b=["x"])) == {"a": 1, "b": ["x"]}


def test_dataclasses_are_shallow_and_tolerate_uncopyable_fields() -> None:
    @dataclasses.dataclass
    class Holder:
        lock: Any
        stream: Any
        items: list[int]

    def gen() -> Iterator[int]:
        yield 1

    stream = gen()
    holder = Holder(threading.Lock(), stream, [1, 2])
    with pytest.raises(TypeError):
        dataclasses.asdict(holder)  # what MLflow avoids, and so do we
    parsed = roundtrip(holder)
    assert parsed["items"] == [1, 2]
    assert "lock" in parsed["lock"]
    assert parsed["stream"] == f"<generator object {gen.__qualname__}>"
    assert next(stream) == 1  # not consumed


def test_dataclass_with_unreadable_field() -> None:
    @dataclasses.dataclass
    class Lazy:
        value: int = dataclasses.field(init=False)

    parsed = roundtrip(Lazy())
    assert parsed == {"value": "<unreadable attribute: AttributeError>"}


def test_attrs_classes() -> None:
    attrs = pytest.importorskip("attrs")

    @attrs.define
    class Point:
        x: int
        y: dt.date

    assert roundtrip(Point(1, dt.date(2020, 5, 6))) == {"x": 1, "y": "2020-05-06"}


class Color(enum.Enum):
    RED = "red"
    BLUE = ("b", 1)


class Level(enum.IntEnum):
    HIGH = 3


class Mode(str, enum.Enum):
    FAST = "fast"


def test_enums_are_recorded_by_value() -> None:
    assert roundtrip([Color.RED, Color.BLUE, Level.HIGH, Mode.FAST]) == ["red", ["b", 1], 3, "fast"]
    assert roundtrip({Level.HIGH: 1, Mode.FAST: 2, Color.RED: 3}) == {"3": 1, "fast": 2, "red": 3}


def test_temporal_and_numeric_stdlib_types() -> None:
    value = {
        "datetime": dt.datetime(2024, 2, 3, 4, 5, 6, 789, tzinfo=dt.timezone.utc),
        "naive": dt.datetime(2024, 2, 3),
        "date": dt.date(2024, 2, 3),
        "time": dt.time(4, 5, 6),
        "durations": [
            dt.timedelta(days=1, seconds=1.5),
            dt.timedelta(seconds=-1),
            dt.timedelta(0),
            dt.timedelta(days=400),
        ],
        "uuid": uuid.UUID(int=7),
        "decimal": decimal.Decimal("1.10"),
        "dec_nan": decimal.Decimal("NaN"),
        "complex": 1 + 2j,
    }
    assert roundtrip(value) == {
        "datetime": "2024-02-03T04:05:06.000789+00:00",
        "naive": "2024-02-03T00:00:00",
        "date": "2024-02-03",
        "time": "04:05:06",
        "durations": ["P1DT1.5S", "-PT1S", "PT0S", "P400D"],
        "uuid": "00000000-0000-0000-0000-000000000007",
        "decimal": "1.10",
        "dec_nan": "NaN",
        "complex": "(1+2j)",
    }


def test_scalar_subclasses_are_plain() -> None:
    class Name(str):
        def __str__(self) -> str:
            return "not this"

    class Count(int):
        pass

    assert roundtrip([Name("alice"), Count(3), {"k": Name("v")}]) == ["alice", 3, {"k": "v"}]


PNG = b"\x89PNG\r\n\x1a\n" + bytes(100)


def test_binary_values_become_size_markers() -> None:
    assert roundtrip([b"abc", bytearray(b"\x00" * 10), memoryview(PNG)]) == [
        "[binary 3 bytes]",
        "[binary 10 bytes]",
        f"[binary image/png {len(PNG)} bytes]",
    ]


def test_binary_values_are_base64_when_captured() -> None:
    limits = CaptureLimits(capture_binary=True, max_string_chars=100)
    assert roundtrip({"b": b"hello"}, limits) == {"b": "aGVsbG8="}
    big = roundtrip(bytes(1000), limits)
    assert big.startswith("A" * 100) and big.endswith("...[truncated 1236 of 1336 chars]")


def test_numpy_arrays_and_scalars() -> None:
    np = pytest.importorskip("numpy")
    value = {
        "vector": np.array([1.5, np.nan]),
        "matrix": np.arange(6).reshape(2, 3),
        "objects": np.array([{"a": 1}, None], dtype=object),
        "scalars": [np.int64(3), np.float32(0.5), np.bool_(True), np.str_("s")],
        "zero_d": np.array(7),
        "complex": np.array([1 + 1j]),
    }
    parsed = roundtrip(value)
    assert parsed["vector"][0] == 1.5 and math.isnan(parsed["vector"][1])
    assert parsed["matrix"] == [[0, 1, 2], [3, 4, 5]]
    assert parsed["objects"] == [{"a": 1}, None]
    assert parsed["scalars"] == [3, 0.5, True, "s"]
    assert parsed["zero_d"] == 7
    assert parsed["complex"] == ["(1+1j)"]


def test_numpy_arrays_respect_item_limits_without_materialising() -> None:
    np = pytest.importorskip("numpy")
    limits = CaptureLimits(max_items=4)
    assert roundtrip(np.arange(1_000_000), limits) == [0, 1, 2, 3, "[... 999996 more items]"]
    grid = roundtrip(np.zeros((100, 100)), limits)
    assert grid[0] == [0.0, 0.0, 0.0, 0.0, "[... 96 more items]"]
    assert grid[-1] == "[... 96 more items]"


def test_pandas_dataframes_and_series() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "when": pd.to_datetime(["2024-01-01", "2024-01-02"])})
    assert roundtrip(frame) == [
        {"a": 1, "b": "x", "when": "2024-01-01T00:00:00"},
        {"a": 2, "b": "y", "when": "2024-01-02T00:00:00"},
    ]
    assert roundtrip(pd.Series([1.0, 2.0])) == [1.0, 2.0]
    assert roundtrip(pd.Series({"x": 1, "y": 2})) == {"x": 1, "y": 2}
    assert roundtrip(pd.DataFrame({"a": range(50)}), CaptureLimits(max_items=2)) == [
        {"a": 0},
        {"a": 1},
        "[... 48 more items]",
    ]


def test_sets_are_sorted_when_possible() -> None:
    assert roundtrip({"s": {3, 1, 2}, "f": frozenset({"b", "a"})}) == {"s": [1, 2, 3], "f": ["a", "b"]}
    mixed = roundtrip({1, "a", None})
    assert sorted(map(str, mixed)) == ["1", "None", "a"]
    assert roundtrip(set(range(100)), CaptureLimits(max_items=3)) == [0, 1, 2, "[... 97 more items]"]


def test_non_string_keys() -> None:
    value = {1: "int", 2.5: "float", None: "none", False: "bool", (1, 2): "tuple", frozenset({3}): "frozenset"}
    assert roundtrip(value) == {
        "1": "int",
        "2.5": "float",
        "null": "none",
        "false": "bool",
        "(1, 2)": "tuple",
        "frozenset({3})": "frozenset",
    }
    assert roundtrip({math.nan: 1, math.inf: 2}) == {"NaN": 1, "Infinity": 2}


def test_colliding_keys_are_kept_not_lost() -> None:
    assert roundtrip({1: "a", "1": "b"}) == {"1": "a", "1 (str)": "b"}


class Pair(NamedTuple):
    left: int
    right: str


def test_namedtuples_are_dicts() -> None:
    Legacy = collections.namedtuple("Legacy", "api_key b")
    assert roundtrip([Pair(1, "r"), Legacy(api_key="k", b=2)]) == [
        {"left": 1, "right": "r"},
        {"api_key": REDACTED, "b": 2},
    ]


def test_generators_and_iterators_are_not_consumed() -> None:
    def numbers() -> Iterator[int]:
        yield from range(3)

    async def agen() -> Any:
        yield 1

    async def coro() -> None:
        return None

    gen, it, mapped = numbers(), iter([1, 2]), map(str, [1])
    pending = coro()
    parsed = roundtrip({"gen": gen, "it": it, "map": mapped, "agen": agen(), "coro": pending})
    assert parsed == {
        "gen": "<generator object test_generators_and_iterators_are_not_consumed.<locals>.numbers>",
        "it": "<list_iterator object>",
        "map": "<map object>",
        "agen": "<async_generator object test_generators_and_iterators_are_not_consumed.<locals>.agen>",
        "coro": "<coroutine object test_generators_and_iterators_are_not_consumed.<locals>.coro>",
    }
    assert list(gen) == [0, 1, 2] and list(it) == [1, 2] and list(mapped) == ["1"]
    pending.close()


def test_other_collections() -> None:
    value = {
        "deque": collections.deque([1, 2]),
        "range": range(3),
        "proxy": types.MappingProxyType({"a": 1}),
        "ordered": collections.OrderedDict(b=1),
        "keys": {"x": 1}.keys(),
        "counter": collections.Counter("aa"),
    }
    assert roundtrip(value) == {
        "deque": [1, 2],
        "range": [0, 1, 2],
        "proxy": {"a": 1},
        "ordered": {"b": 1},
        "keys": ["x"],
        "counter": {"a": 2},
    }


def test_sdk_sentinels_are_dropped_from_mappings_and_null_elsewhere() -> None:
    class NotGiven:
        def __bool__(self) -> bool:
            return False

    class Omit:
        pass

    sentinels: list[object] = [NotGiven(), Omit()]
    for module in ("openai", "anthropic"):
        try:
            sdk = __import__(module)
        except ImportError:
            continue
        sentinels.append(sdk.NOT_GIVEN)
        if hasattr(sdk, "omit"):
            sentinels.append(sdk.omit)
    for sentinel in sentinels:
        assert roundtrip({"model": "m", "temperature": sentinel}) == {"model": "m"}
        assert roundtrip([1, sentinel]) == [1, None]
        assert roundtrip(sentinel) is None


def test_serialisation_protocols() -> None:
    class WithToDict:
        def to_dict(self) -> dict[str, Any]:
            return {"kind": "to_dict", "when": dt.date(2020, 1, 1)}

    class WithModelDump:
        def model_dump(self) -> dict[str, str]:  # no pydantic signature
            return {"kind": "model_dump"}

    class WithJson:
        def __json__(self) -> list[int]:
            return [1, 2]

    class ReturnsSelf:
        def to_dict(self) -> ReturnsSelf:
            return self

    assert roundtrip([WithToDict(), WithModelDump(), WithJson(), ReturnsSelf()]) == [
        {"kind": "to_dict", "when": "2020-01-01"},
        {"kind": "model_dump"},
        [1, 2],
        CYCLE_MARKER,
    ]


def test_plain_objects_use_str_like_mlflow() -> None:
    class Thing:
        def __str__(self) -> str:
            return "a thing"

    assert roundtrip({"t": Thing(), "cls": int}) == {"t": "a thing", "cls": "<class 'int'>"}


def test_objects_whose_str_and_repr_raise_become_type_markers() -> None:
    class Hostile:
        def __str__(self) -> str:
            raise RuntimeError("no str")

        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    class OnlyRepr:
        def __str__(self) -> str:
            raise RuntimeError("no str")

        def __repr__(self) -> str:
            return "OnlyRepr()"

    parsed = roundtrip({"h": Hostile(), "r": OnlyRepr(), Hostile(): 1})
    marker = f"<unserializable {__name__}.test_objects_whose_str_and_repr_raise_become_type_markers.<locals>.Hostile>"
    assert parsed == {"h": marker, "r": "OnlyRepr()", marker: 1}


def test_failing_protocols_become_markers() -> None:
    class BadToDict:
        def to_dict(self) -> dict[str, Any]:
            raise ValueError("boom")

    class BadMapping(collections.abc.Mapping):  # type: ignore[type-arg]
        def __getitem__(self, key: object) -> int:
            raise KeyError(key)

        def __iter__(self) -> Iterator[str]:
            raise RuntimeError("cannot iterate")

        def __len__(self) -> int:
            return 3

    parsed = roundtrip([BadToDict(), BadMapping(), 1])
    assert parsed[0].startswith("<unserializable ") and parsed[0].endswith("BadToDict>")
    assert parsed[1].endswith("BadMapping>")
    assert parsed[2] == 1


def test_mock_objects_do_not_confuse_duck_typing() -> None:
    from unittest import mock

    magic = mock.MagicMock()
    parsed = roundtrip({"m": magic, "n": mock.Mock()})
    # MagicMock looks like an iterator, so it is described rather than touched; Mock prints itself.
    assert parsed["m"] == "<unittest.mock.MagicMock object>"
    assert parsed["n"].startswith("<Mock id=")
    assert not magic.to_dict.called and not magic.model_dump.called


def test_huge_ints() -> None:
    big = 10**5000
    assert roundtrip([big, 2**64]) == [f"<int with {big.bit_length()} bits>", 2**64]
    assert roundtrip({big: 1}) == {f"<int with {big.bit_length()} bits>": 1}


def test_lone_surrogates_are_repaired_to_valid_utf8() -> None:
    text = dump_json({"s": "a\ud800b", "pair": "\U0001f600", "k\udfff": 1})
    text.encode("utf-8")  # must not raise
    assert json.loads(text) == {"s": "a\ufffdb", "pair": "\U0001f600", "k\ufffd": 1}


# --------------------------------------------------------------------------------------------------
# Base64 media
# --------------------------------------------------------------------------------------------------

B64_PNG = __import__("base64").b64encode(PNG * 20).decode()


def test_data_uris_become_binary_markers_anywhere() -> None:
    uri = f"data:image/png;base64,{B64_PNG}"
    payload = {
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}}]},
            {"role": "user", "content": "look at data:text/plain,hello"},
        ],
        "file": f"data:application/pdf;name=x.pdf;base64,{B64_PNG}",
    }
    parsed = roundtrip(payload)
    marker = f"[binary image/png {len(PNG) * 20} bytes]"
    assert parsed["messages"][0]["content"][0]["image_url"]["url"] == marker
    assert parsed["messages"][1]["content"] == "look at data:text/plain,hello"
    assert parsed["file"] == f"[binary application/pdf {len(PNG) * 20} bytes]"
    assert roundtrip(uri) == marker


def test_known_base64_fields_become_binary_markers() -> None:
    payload = {
        "images": [{"b64_json": B64_PNG, "revised_prompt": "a cat"}],
        "anthropic": {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": B64_PNG}},
        "openai_audio": {"type": "input_audio", "input_audio": {"data": B64_PNG, "format": "wav"}},
        "gemini": {"inline_data": {"mime_type": "audio/mp3", "data": B64_PNG}},
    }
    size = len(PNG) * 20
    assert roundtrip(payload) == {
        "images": [{"b64_json": f"[binary image/png {size} bytes]", "revised_prompt": "a cat"}],
        "anthropic": {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/jpeg", "data": f"[binary image/jpeg {size} bytes]"},
        },
        "openai_audio": {
            "type": "input_audio",
            "input_audio": {"data": f"[binary audio/wav {size} bytes]", "format": "wav"},
        },
        "gemini": {"inline_data": {"mime_type": "audio/mp3", "data": f"[binary audio/mp3 {size} bytes]"}},
    }


def test_ordinary_data_fields_are_kept() -> None:
    value = {"data": "x" * 500, "rows": {"data": "a short base64ish string"}, "text": {"data": "hello world " * 100}}
    assert roundtrip(value) == value


def test_media_is_kept_when_binary_capture_is_enabled() -> None:
    uri = f"data:image/png;base64,{B64_PNG}"
    limits = CaptureLimits(capture_binary=True)
    assert roundtrip({"u": uri, "b64_json": B64_PNG}, limits) == {"u": uri, "b64_json": B64_PNG}


# --------------------------------------------------------------------------------------------------
# Cycles, depth, sizes, truncation
# --------------------------------------------------------------------------------------------------


def test_cycles_become_markers() -> None:
    items: list[Any] = [1]
    items.append(items)
    mapping: dict[str, Any] = {"name": "root"}
    mapping["self"] = mapping
    mapping["list"] = items

    @dataclasses.dataclass
    class Node:
        child: Any = None

    node = Node()
    node.child = Node(child=node)
    assert roundtrip(items) == [1, CYCLE_MARKER]
    assert roundtrip(mapping) == {"name": "root", "self": CYCLE_MARKER, "list": [1, CYCLE_MARKER]}
    assert roundtrip(node) == {"child": {"child": CYCLE_MARKER}}


def test_shared_references_are_not_cycles() -> None:
    shared = {"a": 1}
    assert roundtrip([shared, shared, {"again": shared}]) == [shared, shared, {"again": shared}]


def test_deep_nesting_is_cut_at_max_depth() -> None:
    value: Any = "bottom"
    for _ in range(DEFAULT_LIMITS.max_depth + 50):
        value = [value]
    parsed = roundtrip(value)
    assert depth_of(parsed) == DEFAULT_LIMITS.max_depth
    innermost = parsed
    while isinstance(innermost, list):
        innermost = innermost[0]
    assert innermost == "<max depth exceeded: list>"


def test_very_deep_nesting_does_not_hit_the_recursion_limit() -> None:
    value: Any = {}
    for _ in range(sys.getrecursionlimit() * 2):
        value = {"next": value}
    assert depth_of(roundtrip(value)) == DEFAULT_LIMITS.max_depth


def test_huge_containers_keep_first_items_and_say_how_many_were_cut() -> None:
    limits = CaptureLimits(max_items=5)
    assert roundtrip(list(range(100)), limits) == [0, 1, 2, 3, 4, "[... 95 more items]"]
    parsed = roundtrip({f"k{i}": i for i in range(100)}, limits)
    assert list(parsed.items()) == [*((f"k{i}", i) for i in range(5)), ("...", "[... 95 more items]")]


def test_huge_strings_are_cut_with_their_original_length() -> None:
    limits = CaptureLimits(max_string_chars=10)
    assert roundtrip({"s": "abcdefghijklmnopqrstuvwxyz"}, limits) == {"s": "abcdefghij...[truncated 16 of 26 chars]"}


def test_exponentially_shared_structures_are_bounded() -> None:
    value: list[Any] = ["leaf"]
    for _ in range(60):  # 2**60 paths: json.dumps would never finish
        value = [value, value]
    text = dump_json(value)
    assert len(text.encode()) <= DEFAULT_LIMITS.max_attribute_bytes
    json.loads(text)


def test_total_node_budget_bounds_the_work() -> None:
    limits = CaptureLimits(max_nodes=50)
    parsed = roundtrip([list(range(10)) for _ in range(20)], limits)
    numbers = [x for row in parsed if isinstance(row, list) for x in row if isinstance(x, int)]
    assert 30 <= len(numbers) <= 50
    assert parsed[0] == list(range(10))
    assert parsed[-1].startswith("[... ")  # the rows that did not fit are counted, not silently lost


def test_truncation_cuts_the_largest_strings_first_and_keeps_structure() -> None:
    limits = CaptureLimits(max_attribute_bytes=5_000)
    value = {"system": "be brief", "document": "x" * 50_000, "question": "q" * 300, "k": 3}
    parsed = roundtrip(value, limits)
    assert list(parsed) == list(value)
    assert parsed["system"] == "be brief" and parsed["question"] == "q" * 300 and parsed["k"] == 3
    assert parsed["document"].startswith("xxxx")
    assert parsed["document"].endswith(f"...[truncated {50_000 - parsed['document'].index('.')} of 50000 chars]")
    assert len(dump_json(value, limits).encode()) > 4_000  # used the room it had


def test_truncation_cuts_long_lists_and_keeps_original_counts() -> None:
    limits = CaptureLimits(max_attribute_bytes=1_000)
    parsed = roundtrip({"ids": list(range(100_000)), "name": "n"}, limits)
    assert parsed["name"] == "n"
    *kept, marker = parsed["ids"]
    assert kept == list(range(len(kept)))
    # The converter kept 10_000; the fitter cut further but still reports against the original.
    assert marker == f"[... {100_000 - len(kept)} more items]"


def test_truncation_does_not_stack_markers() -> None:
    limits = CaptureLimits(max_attribute_bytes=1_000, max_string_chars=5_000)
    parsed = roundtrip({"s": "y" * 20_000}, limits)
    assert parsed["s"].count("[truncated") == 1 and parsed["s"].endswith("of 20000 chars]")


def test_truncation_counts_utf8_bytes() -> None:
    limits = CaptureLimits(max_attribute_bytes=3_000)
    parsed = roundtrip({"messages": [{"role": "user", "content": "日本語" * 2_000}] * 3}, limits)
    assert len(parsed["messages"]) == 3
    assert all(message["role"] == "user" for message in parsed["messages"])


def test_truncation_with_a_tiny_limit_still_returns_valid_json() -> None:
    limits = CaptureLimits(max_attribute_bytes=64)
    for value in ({f"key{i}": "v" * 100 for i in range(100)}, [[[["x" * 1000]]]] * 50, "z" * 10_000, 10**4000):
        roundtrip(value, limits)


def test_short_strings_are_never_replaced_by_longer_markers() -> None:
    limits = CaptureLimits(max_attribute_bytes=400)
    parsed = roundtrip({"msgs": [{"role": "user", "content": "hello " * 40}] * 30}, limits)
    assert all(m["role"] == "user" for m in parsed["msgs"] if isinstance(m, dict))


# --------------------------------------------------------------------------------------------------
# Snapshot semantics, robustness, configuration
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [{}, {"api_key": "sk"}, {"when": dt.date(2020, 1, 1)}])
def test_to_jsonable_is_a_snapshot(extra: dict[str, Any]) -> None:
    inner = {"content": "original", "tags": ["a"]}
    value = {"messages": [inner], **extra}
    snapshot = to_jsonable(value)
    text = dump_json(value)
    inner["content"] = "mutated"
    inner["tags"].append("b")
    value["messages"].append({"late": True})
    assert snapshot["messages"] == [{"content": "original", "tags": ["a"]}]
    assert json.loads(text)["messages"] == [{"content": "original", "tags": ["a"]}]
    assert json.dumps(snapshot, ensure_ascii=False) == text


def test_keyboard_interrupt_is_not_swallowed() -> None:
    class Interrupting:
        def __str__(self) -> str:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dump_json(Interrupting())


def test_unexpected_internal_failures_are_reported_and_recorded_as_a_marker(
    monkeypatch: pytest.MonkeyPatch, _no_internal_errors: list[BaseException]
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(_serialize, "_fast_dump", broken)
    assert dump_json({"a": 1}) == '"<unserializable dict>"'
    assert to_jsonable({"a": 1}) == "<unserializable dict>"
    assert len(_no_internal_errors) == 2
    _no_internal_errors.clear()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_attribute_bytes": 10}, ValueError),
        ({"max_depth": 0}, ValueError),
        ({"max_depth": 10_000}, ValueError),
        ({"max_items": 0}, ValueError),
        ({"max_nodes": 0}, ValueError),
        ({"max_string_chars": -1}, ValueError),
        ({"max_items": 1.5}, TypeError),
        ({"redact": "yes"}, TypeError),
    ],
)
def test_invalid_limits_fail_loudly(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error, match="CaptureLimits"):
        CaptureLimits(**kwargs)


# --------------------------------------------------------------------------------------------------
# Property tests
# --------------------------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

any_text = st.text(st.characters(exclude_categories=()), max_size=40)  # includes lone surrogates
weird_floats = st.floats(allow_nan=True, allow_infinity=True)
json_scalars = st.none() | st.booleans() | st.integers() | weird_floats | any_text
hashable_keys = (
    any_text
    | st.integers()
    | weird_floats
    | st.none()
    | st.booleans()
    | st.tuples(st.integers(), st.text(max_size=3))
    | st.frozensets(st.integers(), max_size=3)
    | st.sampled_from(["api_key", "max_tokens", "data", "b64_json", "Authorization"])
)
json_like = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=12)
    | st.tuples(children, children)
    | st.dictionaries(hashable_keys, children, max_size=12),
    max_leaves=60,
)
limits_strategy = st.builds(
    CaptureLimits,
    max_attribute_bytes=st.integers(64, 3_000),
    max_depth=st.integers(1, 8),
    max_items=st.integers(1, 12),
    max_string_chars=st.integers(1, 50),
    redact=st.booleans(),
    capture_binary=st.booleans(),
)


@PROPERTY_SETTINGS
@given(value=json_like, limits=limits_strategy)
def test_property_output_is_valid_json_within_limits(value: Any, limits: CaptureLimits) -> None:
    text = dump_json(value, limits)
    assert len(text.encode("utf-8")) <= limits.max_attribute_bytes
    parsed = json.loads(text)
    assert_within_limits(parsed, limits)
    assert json.dumps(to_jsonable(value, limits), ensure_ascii=False) == text or _has_nan(parsed)


def _has_nan(value: Any) -> bool:
    """NaN != NaN, so equality checks must treat outputs containing NaN separately."""
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nan(v) for v in value)
    return False


safe_keys = st.text(st.characters(exclude_categories=("Cs",)), max_size=12).filter(
    lambda k: not is_sensitive_key(k) and k not in ("data", "b64_json")
)
plain_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=8) | st.dictionaries(safe_keys, children, max_size=8),
    max_leaves=40,
)


@PROPERTY_SETTINGS
@given(value=plain_json)
def test_property_plain_values_round_trip_exactly(value: Any) -> None:
    text = dump_json(value)
    assert text == json.dumps(value, ensure_ascii=False)
    assert json.loads(text) == value
    assert to_jsonable(value) == value


class Opaque:
    """An object with nothing but a repr."""

    def __init__(self, payload: object) -> None:
        self.payload = payload

    def __repr__(self) -> str:
        return f"Opaque({self.payload!r})"


class Exploding:
    """Every way of looking at it raises."""

    def __init__(self, error: type[Exception]) -> None:
        self.error = error

    def __str__(self) -> str:
        raise self.error("str")

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        raise self.error("eq")

    def __hash__(self) -> int:
        return 1

    def to_dict(self) -> dict[str, Any]:
        raise self.error("to_dict")


@dataclasses.dataclass
class Box:
    content: Any
    api_key: str = "sk-test"


def _with_cycles(value: Any) -> Any:
    """Wrap ``value`` (once, to keep reprs linear) in containers and objects that refer back to themselves."""
    mapping: dict[Any, Any] = {"value": value}
    mapping["me"] = mapping
    outer: list[Any] = [mapping]
    outer.append(outer)
    box = Box(outer)
    mapping["box"] = box
    return box


def _generator(value: Any) -> Iterator[Any]:
    yield value


scalar_objects = (
    json_scalars
    | st.binary(max_size=40)
    | st.datetimes()
    | st.dates()
    | st.timedeltas()
    | st.decimals()
    | st.uuids()
    | st.complex_numbers()
    | st.fractions()
    | st.sampled_from([Color.RED, Level.HIGH, Mode.FAST, ValueError, RuntimeError, TypeError, RecursionError])
    .map(lambda e: Exploding(e) if isinstance(e, type) else e)
    | st.integers(min_value=10**4000, max_value=10**4000 + 5)
)
arbitrary_objects = st.recursive(
    scalar_objects,
    lambda children: st.lists(children, max_size=6)
    | st.tuples(children, children)
    | st.dictionaries(hashable_keys, children, max_size=6)
    | st.frozensets(st.integers() | st.text(max_size=3), max_size=5)
    | st.builds(Box, children)
    | st.builds(Opaque, children)
    | st.builds(Pair, st.integers(), st.text(max_size=5))
    | st.builds(_generator, children)
    | st.builds(_with_cycles, children)
    | st.builds(collections.deque, st.lists(children, max_size=4))
    | st.builds(lambda c: types.MappingProxyType({"k": c}), children),
    max_leaves=30,
)


@PROPERTY_SETTINGS
@given(value=arbitrary_objects, limits=limits_strategy | st.just(DEFAULT_LIMITS))
def test_property_never_raises_for_arbitrary_objects(value: Any, limits: CaptureLimits) -> None:
    text = dump_json(value, limits)
    assert len(text.encode("utf-8")) <= limits.max_attribute_bytes
    parsed = json.loads(text)
    assert_within_limits(parsed, limits)
    snapshot = to_jsonable(value, limits)
    assert json.loads(json.dumps(snapshot)) == snapshot or _has_nan(snapshot)
    if limits.redact:
        assert "sk-test" not in text
