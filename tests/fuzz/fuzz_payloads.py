"""Generated hostile payloads (hypothesis) and the contract's rules that tell which of them must be refused.

The fuzz tests send only payloads that the contract (docs/contract.md §2, §3, §5, §6) says are invalid on their topic,
so each one must be answered by exactly one ErrorEvent. Validity is judged here by an over-approximation written from
the contract and the service READMEs, not by the services' own code: anything that *might* be accepted on some reading
of the contract (`5.0` as an integer, `" NOW "` as a mode, any ISO-looking timestamp) counts as valid and is not sent,
so a missing error always means a real deviation.

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

EVSE_ID = re.compile(r"^(twc-[0-9a-f]{4}|car-[A-HJ-NPR-Z0-9]{17}|twc3-[a-z0-9-]{1,32}|ocpp-[a-z0-9-]{1,32})$")
VIN = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")
MODES: Final = frozenset({"off", "now", "solar", "minsolar"})
DEFAULT_WORD: Final = "default"
ENVELOPE_KEYS: Final = frozenset({"v", "value", "transaction"})
WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: Day names a lenient reading might take too (any case, spaces around, written out).
_DAY_NAMES: Final = frozenset({*WEEKDAYS, "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"})
#: A window of `[[allocator.schedules]]` / `allocator/schedules/set` (docs/contract.md §2; the README: unknown fields
#: are refused).
SCHEDULE_KEYS: Final = frozenset({"days", "start", "end", "power_w", "current_a", "evse_id", "vin"})
MAX_SCHEDULES: Final = 100  # README: more than 100 windows is a bad command
MAX_SCHEDULE_AMPS: Final = 80  # current_a > 0 and ≤ 80 (docs/contract.md §2: 80 A is the largest Gen2 rating)
VIN_LIST_KEYS: Final = frozenset({"allow", "deny"})
MAX_VINS: Final = 1000  # README: more than 1 000 VINs per list is a bad command
#: The allocator refuses larger commands unread (README).
ALLOCATOR_MAX_COMMAND_BYTES: Final = 64 * 1024
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


def command_value(payload: bytes) -> Any:  # noqa: PLR0911 - one return per rule
    """The value of a command (docs/contract.md §3: plain or `{"value": …}`), or _UNREADABLE when no reading can
    accept it."""
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


_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


def _clock_time(value: Any) -> tuple[int, int, int] | None:
    """A local time "HH:MM" (docs/contract.md §2), read leniently ("7:00", " 07:00 ", "07:00:00"); None when no
    reading takes it."""
    if not isinstance(value, str):
        return None
    match = _CLOCK.match(value.strip())
    if match is None:
        return None
    hours, minutes, seconds = int(match[1]), int(match[2]), int(match[3] or 0)
    return (hours, minutes, seconds) if hours <= 23 and minutes <= 59 and seconds <= 59 else None


def _id_like(pattern: re.Pattern[str], value: Any) -> bool:
    """An id of the contract's form (docs/contract.md §4), spaces around forgiven; case is not (VINs are upper case)."""
    return isinstance(value, str) and pattern.match(value.strip()) is not None


def _positive(value: Any, high: float = math.inf) -> bool:
    number = _number(value)
    return number is not None and 0 < number <= high


def _schedule_ok(item: Any) -> bool:  # noqa: PLR0911 - one return per rule
    """One window of `[[allocator.schedules]]` (docs/contract.md §2); a null field counts as absent
    (docs/contract.md §3)."""
    if not isinstance(item, dict) or not set(item) <= SCHEDULE_KEYS:
        return False
    days = item.get("days")
    if not isinstance(days, list) or not days:
        return False
    if not all(isinstance(day, str) and day.strip().lower() in _DAY_NAMES for day in days):
        return False
    start, end = _clock_time(item.get("start")), _clock_time(item.get("end"))
    if start is None or end is None or start == end:
        return False
    power, current = item.get("power_w"), item.get("current_a")
    if (power is None) == (current is None):  # exactly one of them
        return False
    if not (power is None or _positive(power)) or not (current is None or _positive(current, MAX_SCHEDULE_AMPS)):
        return False
    evse_id, vin = item.get("evse_id"), item.get("vin")
    if evse_id is not None and vin is not None:  # one scope at most
        return False
    return (evse_id is None or _id_like(EVSE_ID, evse_id)) and (vin is None or _id_like(VIN, vin))


def _schedules_ok(value: Any) -> bool:
    """`schedules/set`: a list of at most 100 windows (`[]` = none), or `default`."""
    if _is_default(value):
        return True
    return isinstance(value, list) and len(value) <= MAX_SCHEDULES and all(_schedule_ok(item) for item in value)


#: Words a boolean parser might take (pydantic's lax mode and more).
_TRUE_WORDS: Final = ("true", "on", "yes", "1", "t", "y", "enable", "enabled")
_FALSE_WORDS: Final = ("false", "off", "no", "0", "f", "n", "disable", "disabled")
_SWITCH_WORDS: Final = frozenset((*_TRUE_WORDS, *_FALSE_WORDS))


def _switch_ok(value: Any) -> bool:
    """`schedules_enabled/set`: `true|false` or `default`; any word or number a boolean parser might take counts."""
    if _is_default(value) or isinstance(value, bool):
        return True
    if isinstance(value, str):
        return value.strip().lower() in _SWITCH_WORDS
    return _number(value) in (0.0, 1.0)


def _vin_lists_ok(value: Any) -> bool:
    """`vins/set`'s value: `{"allow": [...], "deny": [...]}` (a missing or null list is empty), or `default`."""
    if _is_default(value):
        return True
    if not isinstance(value, dict) or not set(value) <= VIN_LIST_KEYS:
        return False
    lists: list[set[str]] = []
    for name in sorted(VIN_LIST_KEYS):
        raw = value.get(name)
        raw = [] if raw is None else raw
        if not isinstance(raw, list) or len(raw) > MAX_VINS or not all(_id_like(VIN, item) for item in raw):
            return False
        lists.append({item.strip() for item in raw})
    return not lists[0] & lists[1]  # a VIN in both lists is a contradiction


def vins_might_be_valid(payload: bytes) -> bool:
    """`vins/set` takes the lists as the envelope's `value` (docs/contract.md §3) or bare, with `transaction` beside
    them (docs/contract.md §5)."""
    value = command_value(payload)
    if value is not _UNREADABLE and _vin_lists_ok(value):
        return True
    data = _json_object(payload)
    if data is None or ("v" in data and data["v"] not in (1, "1")):
        return False
    return _vin_lists_ok({key: item for key, item in data.items() if key not in {"v", "transaction"}})


#: Per command kind: might this value be accepted? (True = do not send it as an invalid one.)
VALUE_RULES: dict[str, Callable[[Any], bool]] = {
    "mode": lambda v: isinstance(v, str) and (v.strip().lower() in MODES or _is_default(v)),
    "priority": lambda v: _is_default(v) or _in_range(v, -1000, 1000),
    "charge_now": _charge_now_ok,
    "max_current_twc": lambda v: _is_default(v) or _in_range(v, 0, 32),  # [twc] wiring_max_amps = 32 in the test
    "max_current_car": lambda v: _is_default(v) or _in_range(v, 0, 48),  # README: 0, min_amps…48 or default
    "charge_limit": lambda v: _in_range(v, 50, 100),
    "schedules": _schedules_ok,
    "schedules_enabled": _switch_ok,
    "vins": _vin_lists_ok,  # the envelope's value; command_might_be_valid reads the bare form too
    "any": lambda _v: True,  # refresh/set of a known car: any payload is a request
    "never": lambda _v: False,  # an unknown id: every payload is refused
}


def _loose_timestamp(value: Any) -> bool:
    return isinstance(value, str) and re.match(r"^\s*[+-]?\d", value) is not None


def setpoint_might_be_valid(evse_id: str, payload: bytes) -> bool:
    """Setpoint (docs/contract.md §6) on `<p>/evse/<evse_id>/setpoint`; an empty payload withdraws it (valid)."""
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
    if kind == "vins":
        return vins_might_be_valid(payload)
    value = command_value(payload)
    return value is not _UNREADABLE and VALUE_RULES[kind](value)


# -- what the error must say ---------------------------------------------------------------------------------


ANY_TRANSACTION: Final = object()


def preview(payload: bytes) -> str:
    """The ErrorEvent's `payload` (docs/contract.md §3): UTF-8 with replacement characters, cut to 200 characters."""
    return payload.decode("utf-8", errors="replace")[:ERROR_PAYLOAD_CHARS]


def expected_transaction(payload: bytes) -> object:
    """The transaction an error must echo (docs/contract.md §3), or ANY_TRANSACTION where readings could differ."""
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
            # Not a transaction (docs/contract.md §6: string or integer), but pydantic's lax mode turns false into 0
            # and 3.0 into 3 in the command envelope: reported, not judged here.
            return ANY_TRANSACTION
        if isinstance(transaction, str) and not _encodable(transaction):
            # A lone surrogate ("\\udc00"): not UTF-8 text, so echoed as null or as an escape: not judged here.
            return ANY_TRANSACTION
        readings.append(transaction if isinstance(transaction, str | int) else None)
    return readings[0] if readings[0] == readings[1] else ANY_TRANSACTION


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
            return value.encode("utf-8", errors="surrogatepass")  # a raw surrogate: invalid UTF-8
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


# -- allocator/schedules/set, schedules_enabled/set, vins/set --------------------------------------------------------

VIN_SAMPLES: Final = ("5YJ3E1EA8KF000001", "5YJ3E1EA7KF000002", "WVWZZZ1JZXW000001")
EVSE_ID_SAMPLES: Final = ("twc-0001", "twc-4a1b", "car-5YJ3E1EA8KF000001", "twc3-garage")
_vins = st.sampled_from(VIN_SAMPLES)
bad_vins = st.one_of(
    _vins.map(str.lower),
    _vins.map(lambda v: v[:8] + v[8].lower() + v[9:]),
    st.sampled_from(
        [
            "5YJ3E1EA8KF00000",  # 16
            "5YJ3E1EA8KF0000011",  # 18
            "5YJ3E1EI8KF000001",  # I, O and Q are not used in VINs
            "5YJ3E1EO8KF000001",
            "5YJ3E1EQ8KF000001",
            "5YJ3E1EA8KF 00001",
            "5YJ3E1EA8KF-00001",
            "car-5YJ3E1EA8KF000001",
            "5YJ3E1EA8KF00000\uff11",  # a full-width digit
            "",
            "null",
        ]
    ),
    st.from_regex(r"\A[A-Za-z0-9]{15,19}\Z").filter(lambda v: not VIN.match(v)),
    json_scalars.filter(lambda v: not isinstance(v, str)),
)
_bad_evse_ids = st.one_of(
    st.sampled_from(["TWC-0001", "twc-001", "twc-00011", "twc-000g", "car-5yj3e1ea8kf000001", "twc3-Garage", "twc3-"]),
    topic_ids.filter(lambda i: not EVSE_ID.match(i.strip())),
    json_scalars.filter(lambda v: not isinstance(v, str)),
)
_valid_times = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))
#: A time and a way to write it that a lenient reading might still take: equal start and end stay an empty window.
_equal_times = st.tuples(_valid_times, st.sampled_from(["{}", " {}", "{} ", "{}\n", "{}:00", "\t{}"]))
_bad_times = st.one_of(
    st.sampled_from(
        [
            "24:00",
            "23:60",
            "24:30",
            "99:99",
            "7:5",
            "0700",
            "07.00",
            "07-00",
            "07h00",
            "07:00am",
            "7 pm",
            "07:",
            ":30",
            "-1:00",
            "07:0",
            "007:00",
            "07:000",
            "07:00:60",
            "T07:00",
            "07:00Z",
            "07:00+01:00",
            "noon",
            "",
            " ",
        ]
    ),
    st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(24, 99), st.integers(0, 99)),
    json_scalars.filter(lambda v: not isinstance(v, str)),
)
_day_lists = st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=7, unique=True)
_bad_days = st.one_of(
    st.sampled_from(["mo", "mond", "mondays", "xyz", "", "lun", "montag", "mon,tue", "mon tue", "mon-fri", "weekdays"]),
    st.sampled_from(["*", "all", "1", "7", "day"]),
    st.integers(-1, 8),
    st.none(),
    st.booleans(),
    st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=2),
    st.text(_chars, max_size=6),
)
_bad_day_lists = st.one_of(
    st.just([]),
    st.tuples(_day_lists, _bad_days, st.integers(0, 7)).map(lambda p: [*p[0][: p[2]], p[1], *p[0][p[2] :]]),
    st.sampled_from(["mon", "mon,tue", "mon-fri", "weekdays", "daily"]),
    st.dictionaries(st.sampled_from(WEEKDAYS), st.booleans(), min_size=1, max_size=3),
    json_scalars,
)
_bad_powers = st.one_of(
    st.sampled_from([0, 0.0, -0.0, -1, -7400, "0", "-1", "7400W", "7,4 kW", "", "inf", "1e999", "nan", [], {}, True]),
    st.floats(max_value=0, allow_nan=False),
    st.integers(max_value=0),
    json_values,
)
_bad_schedule_amps = st.one_of(
    st.sampled_from([0, -1, 80.01, 81, 100, 1e9, "0", "81", "16A", "", "inf", "nan", [], {}, True]),
    st.floats(min_value=80.001, allow_nan=False),
    st.floats(max_value=0, allow_nan=False),
    st.integers(min_value=81),
    json_values,
)
_schedule_misspellings = st.sampled_from(
    ["day", "weekdays", "begin", "stop", "from", "to", "power", "powerW", "power_kw", "current", "amps", "evse", "VIN"]
)


@st.composite
def valid_schedules(draw: st.DrawFn) -> dict[str, Any]:
    """One window as docs/contract.md §2 shows it (start and end may rarely be drawn equal: then it is invalid)."""
    item: dict[str, Any] = {"days": draw(_day_lists), "start": draw(_valid_times), "end": draw(_valid_times)}
    if draw(st.booleans()):
        item["power_w"] = draw(st.sampled_from([7400, 1, 3680.5, 11_000]))
    else:
        item["current_a"] = draw(st.sampled_from([16, 6, 80, 32.5]))
    scope = draw(st.sampled_from(["all", "all", "evse_id", "vin"]))
    if scope == "evse_id":
        item["evse_id"] = draw(st.sampled_from(EVSE_ID_SAMPLES))
    elif scope == "vin":
        item["vin"] = draw(_vins)
    return item


_schedule_mutations = st.one_of(
    st.tuples(st.just("set"), st.just("days"), _bad_day_lists),
    st.tuples(st.just("set"), st.sampled_from(["start", "end"]), _bad_times),
    st.tuples(st.just("equal"), st.sampled_from(["start", "end"]), _equal_times),
    st.tuples(st.just("set"), st.just("power_w"), _bad_powers | st.sampled_from([7400, 1, "7400"])),
    st.tuples(st.just("set"), st.just("current_a"), _bad_schedule_amps | st.sampled_from([16, 80, "16"])),
    st.tuples(st.just("drop"), st.sampled_from(["days", "start", "end", "power_w", "current_a"]), st.none()),
    st.tuples(st.just("set"), st.just("evse_id"), _bad_evse_ids | st.sampled_from(EVSE_ID_SAMPLES)),
    st.tuples(st.just("set"), st.just("vin"), bad_vins | _vins),
    st.tuples(st.just("set"), _schedule_misspellings | st.text(_chars, min_size=1, max_size=10), json_scalars),
)


@st.composite
def _mutated_schedule_lists(draw: st.DrawFn) -> list[Any]:
    """One to four windows, one or two mutations of them: bad days, times, caps, scopes, unknown or missing keys."""
    items = draw(st.lists(valid_schedules(), min_size=1, max_size=4))
    for _ in range(draw(st.integers(1, 2))):
        item = items[draw(st.integers(0, len(items) - 1))]
        action, key, value = draw(_schedule_mutations)
        if action == "drop":
            item.pop(key, None)
        elif action == "equal":  # start and end the same time, one of them perhaps written differently
            time, written = value
            item[key], item["end" if key == "start" else "start"] = written.format(time), time
        else:
            item[key] = value
    return items


bad_schedules = weighted(
    (12, _mutated_schedule_lists()),
    (1, st.tuples(valid_schedules(), st.integers(MAX_SCHEDULES + 1, MAX_SCHEDULES + 30)).map(lambda p: [p[0]] * p[1])),
    (1, valid_schedules()),  # one window, not in a list
    (1, st.fixed_dictionaries({"schedules": st.lists(valid_schedules(), max_size=2)})),
    (1, st.lists(json_values, min_size=1, max_size=3)),
    (1, st.sampled_from(["defaults", "none", "off", "[]x", "[ ]]", "mon 23:00-06:00 7400", "DEFAULT!"])),
    (1, json_scalars),
)
bad_switches = st.one_of(
    st.sampled_from(["maybe", "truee", "ture", "flase", "tru", "onn", "2", "-1", "", "null", "none", "defaults"]),
    st.sampled_from(["enable!", "ja", "nein", "schedule", "True!", "[true]", "{true}"]),
    st.integers().filter(lambda n: n not in (0, 1)),
    st.floats(allow_nan=False).filter(lambda f: f not in (0.0, 1.0)),
    st.lists(st.booleans(), min_size=1, max_size=2),
    st.fixed_dictionaries({"enabled": st.booleans()}),
    json_values,
)


@st.composite
def _mutated_vin_lists(draw: st.DrawFn) -> Any:
    """`{"allow": [...], "deny": [...]}` with one or two mutations: a VIN in both, bad or lower-case VINs, wrong
    types, unknown keys, more than 1 000 VINs."""
    data: dict[str, Any] = {}
    for name in ("allow", "deny"):
        if draw(st.integers(0, 3)) > 0:
            data[name] = draw(st.lists(_vins, max_size=2, unique=True))
    for _ in range(draw(st.integers(1, 2))):
        name = draw(st.sampled_from(["allow", "deny"]))
        action = draw(st.sampled_from(["both", "both", "bad", "bad", "bad", "type", "extra", "many"]))
        if action == "both":  # the same VIN in both lists, perhaps written differently in one of them
            vin = draw(_vins)
            variant = draw(st.sampled_from(["{}", "{}", "{}", " {}", "{}\n", "{} "])).format(vin)
            for side, written in (
                ("allow", vin if name == "allow" else variant),
                ("deny", variant if name == "allow" else vin),
            ):
                data[side] = [*data[side], written] if isinstance(data.get(side), list) else [written]
        elif action == "bad":
            items = list(data[name]) if isinstance(data.get(name), list) else []
            items.insert(draw(st.integers(0, len(items))), draw(bad_vins))
            data[name] = items
        elif action == "type":
            data[name] = draw(
                st.one_of(
                    _vins,
                    st.just(",".join(VIN_SAMPLES)),
                    st.dictionaries(_vins, st.booleans(), min_size=1, max_size=2),
                    json_scalars.filter(lambda v: v is not None),
                )
            )
        elif action == "extra":
            key = draw(st.sampled_from(["allowed", "denied", "allow_list", "deny_list", "v", "vins", "Allow"]))
            data[draw(st.just(key) | st.text(_chars, min_size=1, max_size=10))] = draw(json_values)
        else:
            data[name] = [draw(_vins)] * draw(st.integers(MAX_VINS + 1, MAX_VINS + 40))
    return data


bad_vin_lists = weighted(
    (10, _mutated_vin_lists()),
    (1, st.lists(_vins, min_size=1, max_size=2)),  # a bare list: allow or deny?
    (1, st.sampled_from(["open", "none", "allow_list", "defaults", "5YJ3E1EA8KF000001", "allow=5YJ3E1EA8KF000001"])),
    (1, json_scalars),
)


def vins_payloads(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """`vins/set`: the object bare (docs/contract.md §5, optionally with a transaction beside the lists), in the
    envelope (docs/contract.md §3)."""

    def beside(parts: tuple[Any, Any, bool]) -> bytes:
        value, transaction, ascii_only = parts
        data = {**value, "transaction": transaction} if isinstance(value, dict) else value
        return _dumps(data, ascii_only, spaced=False)

    near = weighted((2, values), (1, json_values))
    bare = st.tuples(near, _transactions, st.booleans()).map(beside)
    return weighted((3, garbage()), (2, plain(near)), (2, bare), (3, envelopes(near)))


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
    """HistoryRequest (docs/contract.md §6) and its mutations. On an empty database every one of them is refused."""
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
