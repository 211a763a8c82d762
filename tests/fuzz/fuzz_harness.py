"""Sending thousands of generated payloads to a service process on a real broker, and judging its answers.

Publishing is paced by the answers: at most `window` payloads may be unanswered at any time, so neither the broker's
queue for the service (mosquitto drops QoS 1 messages beyond `max_queued_messages`, 1000 by default) nor ours can
overflow, and a slow CI machine only makes the run slower, never wrong.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import urlsplit

import aiomqtt

from tests.fuzz.fuzz_payloads import ANY_TRANSACTION, expected_transaction, generate, preview
from tests.support.bus import Received, Recorder

#: One line per fuzzed service, printed at the end of the pytest run (see conftest.py).
REPORT: list[str] = []
ERROR_FIELDS = {"v", "topic", "payload", "error", "transaction"}


def fuzz_seed() -> int:
    """$CHARGEBUS_FUZZ_SEED reproduces a run; otherwise a fresh seed each run (printed with the results)."""
    given = os.environ.get("CHARGEBUS_FUZZ_SEED")
    return int(given) if given else random.SystemRandom().randrange(2**32)


def fuzz_scale() -> float:
    """$CHARGEBUS_FUZZ_SCALE multiplies the number of payloads (e.g. 10 for a long local run)."""
    return float(os.environ.get("CHARGEBUS_FUZZ_SCALE", "1"))


@dataclass(frozen=True)
class Case:
    topic: str
    payload: bytes
    retain: bool = False


@dataclass
class Plan:
    """The payloads for one service, drawn per topic kind, keeping only those the contract says are invalid."""

    seed: int
    cases: list[Case] = field(default_factory=list)
    drawn: int = 0

    def add(
        self,
        topics: Callable[[int], str] | str,
        strategy: Any,
        count: int,
        invalid: Callable[[str, bytes], bool],
        *,
        retained_share: float = 0.0,
    ) -> None:
        """Draw `count` payloads for the topic(s); keep the invalid ones; publish a share of them retained."""
        count = max(1, round(count * fuzz_scale()))
        rng = random.Random(self.seed + len(self.cases))
        for index, payload in enumerate(generate(strategy, count, self.seed + self.drawn)):
            self.drawn += 1
            topic = topics if isinstance(topics, str) else topics(index)
            retain = bool(payload) and rng.random() < retained_share
            if retain or invalid(topic, payload):
                self.cases.append(Case(topic, payload, retain))

    def add_cases(self, cases: Iterable[Case]) -> None:
        self.cases.extend(cases)

    def shuffled(self) -> list[Case]:
        cases = list(self.cases)
        random.Random(self.seed).shuffle(cases)
        return cases


class Publisher:
    """A bare MQTT client for sending (the Recorder only listens to the service's answers)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.client = aiomqtt.Client(parts.hostname or "127.0.0.1", parts.port or 1883)

    async def __aenter__(self) -> Self:
        await self.client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.__aexit__(None, None, None)

    async def publish(self, case: Case) -> None:
        await self.client.publish(case.topic, case.payload, qos=1, retain=case.retain)


class Answers:
    """The ErrorEvents on one error topic, counted incrementally from a Recorder."""

    def __init__(self, bus: Recorder, error_topic: str) -> None:
        self.bus = bus
        self.error_topic = error_topic
        self.events: list[Received] = []
        self._cursor = 0

    def count(self) -> int:
        messages = self.bus.messages
        while self._cursor < len(messages):
            message = messages[self._cursor]
            self._cursor += 1
            if message.topic == self.error_topic:
                self.events.append(message)
        return len(self.events)


@dataclass
class Outcome:
    sent: int
    seconds: float
    events: list[dict[str, Any]]


async def blast(
    bus: Recorder,
    url: str,
    error_topic: str,
    cases: list[Case],
    *,
    window: int = 100,
    settle_s: float = 1.5,
    answer_timeout_s: float = 30.0,
    alive: Callable[[], bool] = lambda: True,
) -> Outcome:
    """Publish every case, never more than `window` unanswered; then wait for the answers and a quiet period."""
    answers = Answers(bus, error_topic)
    baseline = answers.count()
    started = time.monotonic()
    async with Publisher(url) as publisher:
        for sent, case in enumerate(cases, start=1):
            await publisher.publish(case)
            if sent - (answers.count() - baseline) > window:
                target = sent - window // 2
                await bus.wait_for(
                    lambda target=target: answers.count() - baseline >= target or not alive(),  # type: ignore[misc]
                    timeout=answer_timeout_s,
                    what=f"answers to keep up (sent {sent}, answered {answers.count() - baseline})",
                )
                assert alive(), f"the service died after {sent} payloads; last: {case}"
    with contextlib.suppress(AssertionError):  # judge() says which payloads went unanswered
        await bus.wait_for(
            lambda: answers.count() - baseline >= len(cases) or not alive(),
            timeout=answer_timeout_s,
            what=f"one error for each of {len(cases)} payloads (got {answers.count() - baseline})",
        )
    await asyncio.sleep(settle_s)  # anything beyond one error each would show up now
    answers.count()
    events = [message.json() for message in answers.events[baseline:]]
    return Outcome(len(cases), time.monotonic() - started, events)


def judge(
    cases: list[Case],
    outcome: Outcome,
    fuzz_topics: Callable[[str], bool],
    lenient: Callable[[str], bool] = lambda _topic: False,
) -> list[str]:
    """Every problem found: a payload without exactly one error, a malformed ErrorEvent, a wrong transaction.

    Transactions are checked on command topics (`/set`, `/request`) except where `lenient(topic)` says a known
    deviation makes them unreliable.
    """
    problems: list[str] = []
    input_errors = []
    for event in outcome.events:
        if set(event) != ERROR_FIELDS or event.get("v") != 1:
            problems.append(f"ErrorEvent with fields {sorted(event)}: {str(event)[:200]}")
            continue
        if event["payload"] is not None and len(event["payload"]) > 200:
            problems.append(f"ErrorEvent payload longer than 200 characters on {event['topic']}")
        if fuzz_topics(event["topic"]):
            input_errors.append(event)
        elif event["payload"] is not None:
            problems.append(f"error about an input nobody sent: {str(event)[:300]}")
        error = str(event["error"])
        if error.startswith("internal error") and "RecursionError" not in error:
            problems.append(f"unhandled exception on {event['topic']}: {error[:300]}")
    expected = collections.Counter((case.topic, preview(case.payload)) for case in cases)
    got = collections.Counter((event["topic"], event["payload"]) for event in input_errors)
    missing = expected - got
    extra = got - expected
    problems += [f"no error for {n}× {key[0]} {key[1][:120]!r}" for key, n in list(missing.items())[:20]]
    problems += [f"{n} extra error(s) for {key[0]} {str(key[1])[:120]!r}" for key, n in list(extra.items())[:20]]
    if len(missing) > 20 or len(extra) > 20:
        problems.append(f"... {len(missing)} payloads unanswered and {len(extra)} answered more than once in all")
    problems += _transactions(
        cases, input_errors, lambda topic: topic.endswith(("/set", "/request")) and not lenient(topic)
    )
    return problems


def _transactions(cases: list[Case], events: list[dict[str, Any]], checked: Callable[[str], bool]) -> list[str]:
    """docs/contract.md §3: `transaction` is echoed when the input carried one (checked for live, non-retained
    commands)."""
    wanted: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for case in cases:
        transaction = expected_transaction(case.payload)
        key = (case.topic, preview(case.payload))
        if case.retain or transaction is ANY_TRANSACTION or not checked(case.topic):
            wanted[key]["*"] += 1
        else:
            wanted[key][json.dumps(transaction)] += 1
    problems = []
    for event in events:
        key = (event["topic"], event["payload"])
        echoed = json.dumps(event["transaction"])
        if wanted[key][echoed] > 0:
            wanted[key][echoed] -= 1
        elif wanted[key]["*"] > 0:
            wanted[key]["*"] -= 1
        else:
            problems.append(f"transaction {echoed[:60]} not the input's on {key[0]} {str(key[1])[:100]!r}")
    return problems[:20]


def record(service: str, outcome: Outcome, seed: int, drawn: int, cases: list[Case] | None = None) -> str:
    kinds: collections.Counter[str] = collections.Counter()
    ids: dict[str, set[str]] = collections.defaultdict(set)
    for case in cases or []:
        parts = case.topic.split("/")[1:]  # the test's prefix is one level
        if parts[0] in {"evse", "vehicle"} and len(parts) > 2:
            ids[f"{parts[0]}/*/{'/'.join(parts[2:])}"].add(parts[1])
            parts[1] = "*"
        kinds["/".join(parts)] += 1
    retained = sum(case.retain for case in cases or [])
    shown = [f"{kind} {n}" + (f" ({len(ids[kind])} ids)" if len(ids[kind]) > 1 else "") for kind, n in kinds.items()]
    detail = f" [{', '.join(shown)}; {retained} retained]" if kinds else ""
    line = (
        f"fuzz {service}: {outcome.sent} invalid payloads sent ({drawn} drawn), {len(outcome.events)} errors, "
        f"{outcome.seconds:.1f} s, {outcome.sent / max(outcome.seconds, 1e-9):.0f} payloads/s, "
        f"seed {seed} (CHARGEBUS_FUZZ_SEED={seed} reproduces){detail}"
    )
    REPORT.append(line)
    print(line)  # noqa: T201 - the run's figures, shown with -s and in the terminal summary
    return line
