"""Generated hostile payloads (hypothesis) and the contract's rules that tell which of them must be refused.

The fuzz tests send only payloads that the contract (§3, §5, §6) says are invalid on their topic, so each one must
be answered by exactly one ErrorEvent. Validity is judged here by an over-approximation written from the contract
and the service READMEs, not by the services' own code: anything that *might* be accepted on some reading of the
contract (`5.0` as an integer, `" NOW "` as a mode, any ISO-looking timestamp) counts as valid and is not sent, so a
missing error always means a real deviation.

Lone UTF-16 surrogate escapes (`"\\udc00"`) are generated in text, transactions included (they once ended a
service's MQTT loop); `CHARGEBUS_FUZZ_SURROGATES=0` leaves them out. History response topics the broker refuses in
a topic name (`broker_accepts_topic`) are generated too: the service must refuse them itself.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

#: The runtime's cap (chargebus.mqtt.MAX_PAYLOAD_BYTES); larger payloads are refused unread.
RUNTIME_MAX_BYTES: Final = 256 * 1024
ERROR_PAYLOAD_CHARS: Final = 200
#: Lone surrogates in generated text (JSON escapes like "\\udc00"): off until the bugs in test_fuzz_known_bugs.py
#: are fixed, because one such message makes a service deaf and would hide everything after it.
GENERATE_LONE_SURROGATES = os.environ.get("CHARGEBUS_FUZZ_SURROGATES", "1") != "0"

EVSE_ID = re.compile(r"^(twc-[0-9a-f]{4}|car-[A-HJ-NPR-Z0-9]{17}|twc3-[a-z0-9-]{1,32})$")
VIN = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")
MODES: Final = frozenset({"off", "now", "solar", "minsolar"})
DEFAULT_WORD: Final = "default"
ENVELOPE_KEYS: Final = frozenset({"v", "value", "transaction"})
SETPOINT_FIELDS: Final = frozenset(
    {"v", "evse_id", "power_w", "charge", "phases", "voltage_v", "seq", "expires_at", "ttl_s", "reason"}
)
EVSE_STATE_FIELDS: Final = frozenset(
    {
        "v",
        "evse_id",
        "kind",
        "name",
        "controllable",
        "controls",
        "online",
        "vin",
        "plugged_in",
        "plugged_in_at",
        "charging",
        "phases",
        "voltage_v",
        "phase_voltages_v",
        "current_a",
        "offered_a",
        "power_w",
        "min_power_w",
        "max_power_w",
        "step_w",
        "session_energy_wh",
        "lifetime_energy_wh",
        "state_code",
        "status_text",
        "source",
        "updated_at",
        "stale",
    }
)
VEHICLE_STATE_FIELDS: Final = frozenset(
    {
        "v",
        "vin",
        "name",
        "online_state",
        "at_home",
        "plugged_in",
        "charging_state",
        "soc_pct",
        "charge_limit_pct",
        "charger_phases",
        "charger_voltage_v",
        "charger_actual_current_a",
        "charge_current_request_a",
        "charge_current_request_max_a",
        "charger_power_w",
        "charge_energy_added_wh",
        "time_to_full_s",
        "source",
        "updated_at",
        "data_age_s",
    }
)


class _NotJsonError(Exception):
    """NaN/Infinity literals, digits beyond Python's int limit, nesting beyond the recursion limit."""


def _reject_constant(name: str) -> float:
    raise _NotJsonError(name)


def strict_json(text: str) -> Any:
    """JSON as the contract means it: no NaN/Infinity; raises ValueError (JSONDecodeError) or _NotJsonError."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise _NotJsonError("nesting") from None
    except json.JSONDecodeError:
        raise
    except ValueError:  # "Exceeds the limit (4300 digits) for integer string conversion"
        raise _NotJsonError("digits") from None


# -- validity (over-approximated from the contract) -------------------------------------------------------------

_UNREADABLE = object()


def command_value(payload: bytes) -> Any:  # noqa: PLR0911 - one return per rule of §3
    """The value of a command (§3: plain or `{"value": …}`), or _UNREADABLE when no reading can accept it."""
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        return _UNREADABLE
    if not text:
        return _UNREADABLE
    try:
        data = strict_json(text)
    except _NotJsonError:
        return _UNREADABLE
    except ValueError:
        return _UNREADABLE if text[0] in '{["' else text  # a plain word for mosquitto_pub users
    if isinstance(data, dict):
        if "value" not in data or not set(data) <= ENVELOPE_KEYS:
            return _UNREADABLE
        if "v" in data and data["v"] not in (1, "1"):
            return _UNREADABLE
        if isinstance(data.get("transaction"), list | dict):
            return _UNREADABLE
        return data["value"]
    return data


def _number(value: Any) -> float | None:
    """A finite number, also from a numeric string (lenient); None otherwise. Booleans are not numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, int):
        return float(value) if abs(value) < 1e300 else None
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None


def _is_default(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() == DEFAULT_WORD


def _in_range(value: Any, low: float, high: float) -> bool:
    number = _number(value)
    return number is not None and low <= number <= high


def _charge_now_ok(value: Any) -> bool:
    if isinstance(value, dict):
        if "seconds" not in value or not set(value) <= {"seconds", "evse_id"}:
            return False
        evse_id = value.get("evse_id")
        if evse_id is not None and not (isinstance(evse_id, str) and EVSE_ID.match(evse_id)):
            return False
        value = value["seconds"]
    return _is_default(value) or _in_range(value, 0, math.inf)


#: Per command kind: might this value be accepted? (True = do not send it as an invalid one.)
VALUE_RULES: dict[str, Callable[[Any], bool]] = {
    "mode": lambda v: isinstance(v, str) and (v.strip().lower() in MODES or _is_default(v)),
    "priority": lambda v: _is_default(v) or _in_range(v, -1000, 1000),
    "charge_now": _charge_now_ok,
    "max_current_twc": lambda v: _is_default(v) or _in_range(v, 0, 32),  # [twc] wiring_max_amps = 32 in the test
    "max_current_car": lambda v: _is_default(v) or _in_range(v, 0, 48),  # README: min_amps…48 or default
    "charge_limit": lambda v: _in_range(v, 50, 100),
    "any": lambda _v: True,  # refresh/set of a known car: any payload is a request
    "never": lambda _v: False,  # an unknown id: every payload is refused
}


def _loose_timestamp(value: Any) -> bool:
    return isinstance(value, str) and re.match(r"^\s*[+-]?\d", value) is not None


def setpoint_might_be_valid(evse_id: str, payload: bytes) -> bool:
    """Setpoint (§6) on `<p>/evse/<evse_id>/setpoint`; an empty payload withdraws it (valid)."""
    if not payload:
        return True
    data = _json_object(payload)
    if data is None or not set(data) <= SETPOINT_FIELDS:
        return False
    if data.get("evse_id") != evse_id or not _loose_timestamp(data.get("expires_at")):
        return False
    checks: dict[str, Callable[[Any], bool]] = {
        "v": lambda v: v in (1, "1"),
        "power_w": lambda v: v is None or _in_range(v, 0, math.inf),
        "charge": lambda v: v is None or isinstance(v, bool | int | str),
        "phases": lambda v: v is None or _in_range(v, 1, 3),
        "voltage_v": lambda v: v is None or _in_range(v, 1e-9, 1000),
        "seq": lambda v: v is None or _number(v) is not None,
        "ttl_s": lambda v: v is None or _in_range(v, 1e-12, math.inf),
        "reason": lambda v: isinstance(v, str | int | float),
    }
    return all(check(data[key]) for key, check in checks.items() if key in data)


def state_might_be_valid(fields: frozenset[str], id_field: str, topic_id: str, payload: bytes) -> bool:
    """EvseState / VehicleState: an empty payload removes it (valid); otherwise keys and id decide (lenient)."""
    if not payload:
        return True
    data = _json_object(payload)
    return data is not None and set(data) <= fields and data.get(id_field) == topic_id


def _json_object(payload: bytes) -> dict[str, Any] | None:
    try:
        data = strict_json(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, _NotJsonError):
        return None
    return data if isinstance(data, dict) else None


def command_might_be_valid(kind: str, payload: bytes) -> bool:
    if kind == "any":
        return True  # not even read as a command: an empty or garbled refresh is still a refresh
    value = command_value(payload)
    return value is not _UNREADABLE and VALUE_RULES[kind](value)


# -- what the error must say ---------------------------------------------------------------------------------


ANY_TRANSACTION: Final = object()


def preview(payload: bytes) -> str:
    """The ErrorEvent's `payload` (§3): UTF-8 with replacement characters, cut to 200 characters."""
    return payload.decode("utf-8", errors="replace")[:ERROR_PAYLOAD_CHARS]


def expected_transaction(payload: bytes) -> object:
    """The transaction an error must echo (§3), or ANY_TRANSACTION where readings could differ."""
    if len(payload) > RUNTIME_MAX_BYTES:
        return ANY_TRANSACTION
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return None
    readings: list[object] = []
    for candidate in (text, text.strip()):
        try:
            data = strict_json(candidate)
        except _NotJsonError as exc:
            if str(exc) == "nesting":  # where the recursion limit bites depends on the stack depth
                return ANY_TRANSACTION
            readings.append(None)
            continue
        except ValueError:
            readings.append(None)
            continue
        transaction = data.get("transaction") if isinstance(data, dict) else None
        if isinstance(transaction, bool | float):
            # Not a transaction (§6: string or integer), but pydantic's lax mode turns false into 0 and 3.0 into 3
            # in the command envelope: reported, not judged here.
            return ANY_TRANSACTION
        readings.append(transaction if isinstance(transaction, str | int) else None)
    return readings[0] if readings[0] == readings[1] else ANY_TRANSACTION


def broker_accepts_topic(topic: str) -> bool:
    """What mosquitto accepts in a topic name (its UTF-8 check): no control characters, no non-characters."""
    for char in topic:
        point = ord(char)
        if point <= 0x1F or 0x7F <= point <= 0x9F or 0xD800 <= point <= 0xDFFF or 0xFDD0 <= point <= 0xFDEF:
            return False
        if point & 0xFFFF in (0xFFFE, 0xFFFF):
            return False
    return True


# -- generators -------------------------------------------------------------------------------------------------

_chars = st.characters(codec=None) if GENERATE_LONE_SURROGATES else st.characters(exclude_categories=["Cs"])
#: Topic ids: printable, no topic separators or wildcards, nothing a broker refuses in a topic name.
_ID_ALPHABET = st.characters(
    blacklist_categories=("Cc", "Cs", "Co", "Cn"), blacklist_characters="/+#\ufffe\uffff", min_codepoint=0x20
)
topic_ids = st.one_of(
    st.text(_ID_ALPHABET, min_size=1, max_size=24),
    st.sampled_from(["TWC-4A1B", "twc-4a1", "twc-4a1bb", "car-", "twc3-", "twc3-UPPER", "x", "5yj3e1ea8kf000001"]),
    st.from_regex(r"\Acar-[A-Z0-9]{16,18}\Z"),
    st.from_regex(r"\Atwc-[0-9a-zA-Z]{3,5}\Z"),
)

_text = st.text(_chars, max_size=40)
_huge_ints = st.integers(min_value=2**63, max_value=10**60) | st.integers(min_value=-(10**60), max_value=-(2**63))
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**31), max_value=2**31),
    _huge_ints,
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=12,
)

_LITERALS = [
    b"NaN",
    b"-NaN",
    b"Infinity",
    b"-Infinity",
    b"1e999",
    b"-1e999",
    b"1e-999",
    b"0x10",
    b"010",
    b"+5",
    b".5",
    b"5.",
    b"1_000",
    b"1,5",
    b"null",
    b"true",
    b"false",
    b"[]",
    b"{}",
    b'""',
    b"\xef\xbb\xbf10",  # BOM
    b"\xc0\xaf",  # overlong encoding
    b"\xed\xa0\x80",  # an encoded surrogate
    b"\x00",
    b"undefined",
    b"None",
    b"{'value': 10}",
    b'{"value": NaN}',
    b'{"value": Infinity, "transaction": "inf"}',
    b'{"value": 1e999, "transaction": "huge"}',
    b'{"value": -1e999}',
    b'{"value": 10,}',
    b'{"value": 10} trailing',
    b'{"value": 10}{"value": 11}',
    b'{"value" 10}',
    b"{value: 10}",
]


def _number_literals() -> st.SearchStrategy[bytes]:
    many_digits = st.integers(min_value=4301, max_value=6000).map(lambda n: b"9" * n)
    exponents = st.tuples(st.integers(-99, 99), st.integers(-400, 400)).map(lambda p: f"{p[0]}e{p[1]}".encode())
    return st.one_of(
        st.integers().map(lambda n: str(n).encode()),
        _huge_ints.map(lambda n: str(n).encode()),
        st.floats(allow_nan=False, allow_infinity=False).map(lambda f: repr(f).encode()),
        exponents,
        many_digits,
    )


def _deep_nesting() -> st.SearchStrategy[bytes]:
    def build(parts: tuple[int, str, bool, bool]) -> bytes:
        depth, kind, closed, enveloped = parts
        opener, closer = ("[", "]") if kind == "list" else ('{"a":', "}")
        text = opener * depth + "1" + (closer * depth if closed else "")
        return (f'{{"value": {text}, "transaction": "deep"}}' if enveloped else text).encode()

    return st.tuples(
        st.integers(min_value=30, max_value=6000),
        st.sampled_from(["list", "object"]),
        st.booleans(),
        st.booleans(),
    ).map(build)


def _dumps(data: Any, ascii_only: bool, spaced: bool) -> bytes:
    text = json.dumps(data, ensure_ascii=ascii_only, indent=2 if spaced else None)
    return text.encode("utf-8", errors="surrogatepass")  # a raw surrogate becomes invalid UTF-8


_transactions = st.one_of(
    st.none(),
    st.text(_chars, max_size=30),
    st.integers(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=2),
    st.just({"a": 1}),
)


def envelopes(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """`{"value": …, "transaction": …}` and its near misses: extra keys, wrong `v`, no value, misspellings."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        data: dict[str, Any] = {}
        shape = draw(st.sampled_from(["plain", "plain", "plain", "extra", "v", "novalue", "misspelt"]))
        if shape != "novalue":
            data["misspelt_value" if shape == "misspelt" else "value"] = draw(values)
        if draw(st.booleans()):
            data["transaction"] = draw(_transactions)
        if shape == "extra":
            data[draw(st.text(_chars, min_size=1, max_size=12))] = draw(json_scalars)
        if shape == "v":
            data["v"] = draw(st.one_of(st.integers(min_value=2), st.just(0), st.just("2"), st.just(None)))
        return _dumps(data, draw(st.booleans()), draw(st.booleans()))

    return build()


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of `choices`, each drawn in proportion to its weight (st.one_of flattens nested one_ofs, which would
    give every leaf of `garbage()` the weight of a whole family)."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


def plain(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """A value as mosquitto_pub users send it: a bare word, or its JSON."""

    def render(parts: tuple[Any, bool]) -> bytes:
        value, bare = parts
        if bare and isinstance(value, str):
            return value.encode()
        return _dumps(value, ascii_only=True, spaced=False)

    return st.tuples(values, st.booleans()).map(render)


def garbage() -> st.SearchStrategy[bytes]:
    """Topic-independent junk: bytes, unicode text, odd literals, numbers, nesting, any JSON shape."""
    return st.one_of(
        st.binary(max_size=200),
        st.text(_chars, max_size=120).map(lambda t: t.encode("utf-8", errors="surrogatepass")),
        st.sampled_from(_LITERALS),
        _number_literals(),
        _deep_nesting(),
        json_values.map(lambda v: _dumps(v, ascii_only=False, spaced=False)),
    )


def command_payloads(bad_values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Payloads for a command topic, biased to the topic's own near misses."""
    values = weighted((2, bad_values), (1, json_values))
    return weighted((3, garbage()), (3, plain(values)), (4, envelopes(values)))


# Topic-specific near misses (invalid by the contract, but close to something valid).
_bad_numbers_text = st.sampled_from(["ten", "10A", "10 A", "1O", "", " ", "defaultt", "DEFAULT!", "auto", "max"])
bad_modes = st.one_of(
    st.sampled_from(["turbo", "on", "charge", "solar ", "minsolar2", "Sol ar", "fast", "", "nowx", "defaults"]),
    st.text(_chars, max_size=12),
    json_values,
)
bad_priorities = st.one_of(
    st.integers(min_value=1001),
    st.integers(max_value=-1001),
    st.floats(min_value=-1000, max_value=1000).filter(lambda f: not f.is_integer()),
    st.booleans(),
    _bad_numbers_text,
    st.lists(st.integers(-5, 5), min_size=1, max_size=2),
)
bad_charge_now = st.one_of(
    st.integers(max_value=-1),
    st.floats(max_value=-1e-6, allow_nan=False, allow_infinity=False),
    st.booleans(),
    _bad_numbers_text,
    st.fixed_dictionaries({"seconds": st.integers(max_value=-1)}),
    st.fixed_dictionaries({"seconds": st.integers(0, 3600), "evse_id": topic_ids}),
    st.fixed_dictionaries({"evse_id": st.just("twc-4a1b")}),
    st.fixed_dictionaries({"seconds": st.just(60), "extra": json_scalars}),
    st.fixed_dictionaries({"seconds": st.sampled_from(["soon", None, [], True])}),
)


def bad_amps(high: int) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.integers(min_value=high + 1),
        st.integers(max_value=-1),
        st.floats(min_value=high + 0.5, allow_nan=False, allow_infinity=False),
        st.floats(max_value=-0.5, allow_nan=False, allow_infinity=False),
        st.booleans(),
        _bad_numbers_text,
        st.dictionaries(_text, json_scalars, min_size=1, max_size=2),
    )


bad_charge_limits = st.one_of(
    st.integers(max_value=49),
    st.integers(min_value=101),
    st.floats(max_value=49.9, allow_nan=False, allow_infinity=False),
    st.floats(min_value=100.1, allow_nan=False, allow_infinity=False),
    st.booleans(),
    _bad_numbers_text,
    st.sampled_from(["80%", "full", "50-100"]),
)


def setpoints(evse_id: str, other_ids: list[str]) -> st.SearchStrategy[bytes]:
    """Setpoints with one to three mutations of a valid one: wrong types, missing keys, foreign ids, extras."""
    base = {
        "v": 1,
        "evse_id": evse_id,
        "power_w": 2400.0,
        "charge": None,
        "phases": 1,
        "voltage_v": 240.0,
        "seq": 1,
        "expires_at": "2100-01-01T00:00:00.000Z",
        "ttl_s": 120.0,
        "reason": "fuzz",
    }
    bad_field_values = st.one_of(
        json_values,
        st.sampled_from([-1, -0.001, -1e308, "2400", "", [], {}, True]),
        st.just("NaN-literal"),
    )
    mutation = st.one_of(
        st.tuples(st.just("drop"), st.sampled_from(["evse_id", "expires_at"]), st.none()),
        st.tuples(st.just("set"), st.sampled_from(sorted(base)), bad_field_values),
        st.tuples(st.just("set"), st.just("evse_id"), st.sampled_from(other_ids) | topic_ids),
        st.tuples(st.just("set"), st.just("expires_at"), st.sampled_from(["tomorrow", "", "2100-13-45", "x"])),
        st.tuples(st.just("extra"), st.text(_chars, min_size=1, max_size=12), json_scalars),
    )

    def render(mutations: list[tuple[str, str, Any]]) -> bytes:
        data: dict[str, Any] = dict(base)
        literal = False
        for action, key, value in mutations:
            if action == "drop":
                data.pop(key, None)
            elif value == "NaN-literal":
                data[key] = math.nan
                literal = True
            else:
                data[key] = value
        return json.dumps(data, allow_nan=literal).encode()

    return weighted((7, st.lists(mutation, min_size=1, max_size=3).map(render)), (3, garbage()))


def states(fields: frozenset[str], id_field: str, topic_id: str) -> st.SearchStrategy[bytes]:
    """EvseState/VehicleState-shaped payloads that cannot be valid: unknown keys, foreign ids, garbage."""
    keys = st.sampled_from(sorted(fields))
    broken = st.fixed_dictionaries(
        {id_field: st.sampled_from([topic_id, "twc-ffff", "car-5YJ3E1EA7KF000002", ""]) | topic_ids},
        optional={"v": st.integers(2, 9)},
    ).flatmap(
        lambda head: st.dictionaries(
            st.one_of(keys, st.text(_chars, min_size=1, max_size=10)), json_values, max_size=6
        ).map(lambda rest: json.dumps({**rest, **head}).encode())
    )
    return weighted((6, broken), (4, garbage()))


@dataclass(frozen=True)
class HistoryBits:
    """What a generated history request may point its answer at."""

    answers_topic: str
    own_topics: tuple[str, ...]


def history_requests(bits: HistoryBits) -> st.SearchStrategy[bytes]:
    """HistoryRequest (§6) and its mutations. On an empty database every one of them is refused."""
    stamps = st.one_of(
        st.sampled_from(
            [
                "2027-01-01T00:00:00Z",
                "2027-01-01T00:00:00",  # no zone
                "0001-01-01T00:00:00Z",
                "9999-12-31T23:59:59Z",
                "2027-02-30T00:00:00Z",
                "2027-01-01T23:59:60Z",
                "yesterday",
                "",
                "2027-01-01",
            ]
        ),
        json_scalars,
    )
    response_topics = st.one_of(
        st.just(bits.answers_topic),
        st.sampled_from(["#", "+", "a/#", "$SYS/x", "", "a/+/b", *bits.own_topics]),
        st.text(_ID_ALPHABET, min_size=1, max_size=20).map(lambda t: f"{bits.answers_topic}/{t}"),
        # Known bug (test_fuzz_known_bugs.py): a topic the broker refuses gets the service disconnected.
        json_scalars,
    )
    request = st.fixed_dictionaries(
        {},
        optional={
            "v": st.sampled_from([1, 1, 1, 2, "1", None]),
            "op": st.sampled_from(["power", "energy", "sessions", "POWER", "total", "", None]) | json_scalars,
            "evse_id": st.sampled_from(["twc-4a1b", "car-5YJ3E1EA8KF000001", "twc3-garage"]) | topic_ids,
            "vin": st.sampled_from(["5YJ3E1EA8KF000001", "5yj3e1ea8kf000001", "X"]) | json_scalars,
            "from": stamps,
            "to": stamps,
            "step_s": st.sampled_from([60, 1, 0, -1, 86_401, 1.5, "60"]) | json_scalars,
            "response_topic": response_topics,
            "transaction": _transactions,
            "extra": json_scalars,
        },
    ).map(lambda data: json.dumps(data).encode())
    base = {
        "v": 1,
        "op": "energy",
        "evse_id": "twc-4a1b",
        "from": "2027-01-01T00:00:00Z",
        "to": "2027-01-02T00:00:00Z",
        "step_s": 60,
        "response_topic": bits.answers_topic,
        "transaction": "t",
    }
    field_values = {
        "op": st.sampled_from(["power", "energy", "sessions"]),
        "evse_id": st.sampled_from(["twc-4a1b", "car-5YJ3E1EA8KF000001", "twc3-garage", "twc-0000"]),
        "vin": st.sampled_from(["5YJ3E1EA8KF000001", "5YJ3E1EA7KF000002"]),
        "from": stamps,
        "to": stamps,
        "step_s": st.integers(min_value=-5, max_value=100_000),
        "response_topic": response_topics,
        "transaction": _transactions,
    }
    mutation = st.one_of(
        st.sampled_from(sorted(field_values)).flatmap(lambda key: st.tuples(st.just(key), field_values[key])),
        st.tuples(st.sampled_from(["drop-evse_id", "drop-from", "drop-to", "drop-op"]), st.none()),
        st.tuples(st.sampled_from(sorted(base)), json_values),
    )

    def mutate(mutations: list[tuple[str, Any]]) -> bytes:
        data: dict[str, Any] = dict(base)
        for key, value in mutations:
            if key.startswith("drop-"):
                data.pop(key.removeprefix("drop-"), None)
            else:
                data[key] = value
        return json.dumps(data).encode()

    return weighted((5, st.lists(mutation, max_size=3).map(mutate)), (2, request), (3, garbage()))


# -- collecting examples outside a test ---------------------------------------------------------------------------


def generate(strategy: st.SearchStrategy[Any], count: int, seed: int) -> list[Any]:
    """`count` examples of `strategy`, reproducible from `seed` (hypothesis drives the generation)."""
    found: list[Any] = []

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis_seed(seed)
    @given(strategy)
    def collect(example: Any) -> None:
        found.append(example)

    collect()
    return found
