from __future__ import annotations

from typing import get_args

import pytest
from chargebus.topics import SERVICES, SPECS, TOPICS, TopicKey, Topics, topic_table
from hypothesis import given
from hypothesis import strategies as st

ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)


def test_contract_table_is_complete() -> None:
    patterns = {spec.pattern for spec in TOPICS}
    assert "evse/{evse_id}/max_current/set" in patterns
    assert len(TOPICS) == 30
    assert {"tariff/grid", "tariff/feedin", "forecast/solar", "forecast/co2", "forecast/state"} <= patterns
    assert {"vehicle/{vin}/plan/set", "evse/{evse_id}/plan/set"} <= patterns
    assert "allocator/grid_limit/set" in patterns
    assert "allocator/battery_hold" in patterns
    assert "history/energy/{subject_id}" in patterns
    commands = [s for s in TOPICS if s.is_command]
    assert all(not s.retained for s in commands)


@given(st.sampled_from(list(SPECS)), ids, st.sampled_from(SERVICES))
def test_build_then_parse_round_trips(key: TopicKey, ident: str, service: str) -> None:
    topics = Topics("home/ev")
    spec = SPECS[key]
    values = {"evse_id": ident, "vin": ident, "meter": ident, "service": service, "subject_id": ident}
    needed = {name: value for name, value in values.items() if f"{{{name}}}" in spec.pattern}
    parsed = topics.parse(topics.build(key, **needed))
    assert parsed is not None
    assert parsed.key == key
    assert parsed.ids == needed


def test_parse_examples() -> None:
    topics = Topics()
    parsed = topics.parse("chargebus/evse/twc-4a1b/priority/set")
    assert parsed is not None
    assert (parsed.key, parsed.ids) == ("evse_priority_set", {"evse_id": "twc-4a1b"})
    assert topics.parse("other/evse/twc-4a1b/state") is None
    assert topics.parse("chargebus/unknown-service/status") is None
    assert topics.filter("evse_state") == "chargebus/evse/+/state"


@pytest.mark.parametrize("bad", ["", "/x", "x/", "a/#", "a/+/b"])
def test_bad_prefix_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        Topics(bad)


def test_ids_cannot_escape_their_level() -> None:
    with pytest.raises(ValueError, match="invalid"):
        Topics().evse_state("twc-4a1b/../x")
    with pytest.raises(ValueError, match="invalid"):
        Topics().power("#")


def test_table_lists_every_topic_under_the_prefix() -> None:
    table = topic_table("home")
    assert all(f"home/{spec.pattern}" in table for spec in TOPICS)


def test_each_evse_id_has_one_owning_bridge() -> None:
    from chargebus.topics import owning_bridge  # noqa: PLC0415 - kept beside the one test that needs it

    assert owning_bridge("twc-4a1b") == "twc-bridge"
    assert owning_bridge("car-5YJ3E1EA8KF000001") == "tesla-bridge"
    assert owning_bridge("twc3-garage") == "tesla-bridge"
    assert owning_bridge("ocpp-garage") == "ocpp-bridge"
    assert owning_bridge("ocpp-garage-2") == "ocpp-bridge"
    assert owning_bridge("garage-door") == "twc-bridge"  # no EVSE kind: one service still answers (docs/contract.md §3)


def test_the_topic_key_type_lists_every_key_of_the_table() -> None:
    assert get_args(TopicKey) == tuple(spec.key for spec in TOPICS)
