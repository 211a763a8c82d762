"""The Node-RED examples in a real Node-RED and a real browser, against the running stack.

Node-RED 4 and both dashboards (`node-red-dashboard` for `flows.json`, `@flowfuse/node-red-dashboard` for
`flows-dashboard2.json`) are installed from npm once into the user's cache (`~/.cache/chargebus/node-red/…`, or
under `$XDG_CACHE_HOME`) and reused by later runs; each test gets a Node-RED user directory of its own with the
example flow in it, pointed at the test broker and prefix as a user would edit it. Headless Chromium (Debian's
`chromium` and `chromium-driver`, driven by Selenium) opens the dashboard and uses it like a person, first before
chargebus runs, then with the stack (the four services and the simulated world, `tests.e2e.e2e_stack`) at noon;
everything is asserted on MQTT:

- before chargebus' state has arrived, ↑ on the priority (which would send −999) and a mode send nothing;
- nothing is published while the widgets fill in from the state, nor when the page is opened again;
- the priority number starts at the charge point's priority (10), ↑ sends 11, and "config value" sends
  `default`, after which the number shows 10 again;
- the Mode dropdown sends the mode chosen and the allocator switches to it;
- Charge now (1 h) sends 3600 and the allocator shows charge-now one simulated hour ahead; Cancel sends 0;
- the allocations table shows, per charge point, the reason the allocator gives.

Skipped, with the reason, where `node`/`npm`, Chromium or chromedriver are not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from chargebus_sim.house import House
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.e2e_stack import TWC_A_ID, Stack, group_with, running_stack
from tests.support.broker_fixture import BrokerUnderTest
from tests.support.bus import Recorder

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "node-red"
#: What is installed from npm: exact versions, so a cached install is the one the test was written against.
PACKAGES = {"node-red": "4.1.15", "node-red-dashboard": "3.6.6", "@flowfuse/node-red-dashboard": "1.31.0"}
NPM_TIMEOUT_S = 300.0
NODE_RED_START_S = 60.0
#: How long the browser waits for a widget to show something, and the bus for a command or its effect.
UI_WAIT_S = 20.0
BUS_WAIT_S = 15.0
NOON = House(cloudy_from_h=24.0)
#: The demo's priority of car A, the car at TWC A (`[[tesla.vehicles]]` in the simulated world's config).
DEMO_PRIORITY = 10

NODE = shutil.which("node")
NPM = shutil.which("npm")
CHROMIUM = next((found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None)
CHROMEDRIVER = shutil.which("chromedriver")
MISSING = [
    what
    for what, found in (
        ("node", NODE),
        ("npm", NPM),
        ("chromium (Debian package chromium)", CHROMIUM),
        ("chromedriver (Debian package chromium-driver)", CHROMEDRIVER),
    )
    if found is None
]
if MISSING:
    pytestmark.append(
        pytest.mark.skip(reason=f"Node-RED browser test needs {', '.join(MISSING)} on PATH; not installed here")
    )


# --- Node-RED from npm, cached ---------------------------------------------------------------------------------------


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chargebus" / "node-red"


def install_key() -> str:
    return "-".join(f"{name.removeprefix('@').replace('/', '_')}@{version}" for name, version in PACKAGES.items())


def npm_install(target: Path) -> Path:
    """`target/node_modules` with the packages, installed by npm when not cached yet (one installer at a time)."""
    modules = target / "node_modules"
    done = target / "installed"
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f"{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists() and (modules / "node-red" / "red.js").exists():
            return modules
        staging = target.parent / f"{target.name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        manifest = {"name": "chargebus-node-red-test", "private": True, "dependencies": PACKAGES}
        (staging / "package.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        assert NPM is not None
        result = subprocess.run(
            [NPM, "install", "--no-audit", "--no-fund", "--omit=dev", "--loglevel=error"],
            cwd=staging,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"npm install {PACKAGES} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        done.write_text(json.dumps(PACKAGES), encoding="utf-8")
        return modules


@pytest.fixture(scope="session")
def node_red_modules() -> Path:
    return npm_install(cache_root() / install_key())


# --- the flow as a user points it at their broker --------------------------------------------------------------------


def flow_for(path: Path, broker: BrokerUnderTest, prefix: str) -> list[dict[str, Any]]:
    """The example flow with the broker and the topic prefix changed, as the README tells a user to."""
    nodes: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    for node in nodes:
        if node["type"] == "mqtt-broker":
            node["broker"], node["port"] = "127.0.0.1", str(broker.port)
        if node["type"] in ("mqtt in", "mqtt out"):
            assert node["topic"].startswith("chargebus/"), node
            node["topic"] = prefix + node["topic"].removeprefix("chargebus")
    return nodes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class NodeRed:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    nodes: list[dict[str, Any]]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def widget_id(self, label: str) -> str:
        return str(next(node["id"] for node in self.nodes if node.get("label") == label and node["type"][2] in "_-"))

    def table_id(self) -> str:
        return str(next(node["id"] for node in self.nodes if node.get("name") == "allocations table"))


def wait_http(url: str, deadline: float, process: subprocess.Popen[bytes]) -> None:
    while True:
        if process.poll() is not None:
            raise AssertionError(f"Node-RED exited with {process.returncode}")
        with contextlib.suppress(urllib.error.URLError, OSError), urllib.request.urlopen(url, timeout=2) as answer:
            if answer.status == 200:
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"Node-RED did not serve {url} in time")
        time.sleep(0.2)


@contextlib.contextmanager
def node_red(modules: Path, workdir: Path, nodes: list[dict[str, Any]], page: str) -> Iterator[NodeRed]:
    """Node-RED with `nodes` as its flow; yields once the page is served and the flow is connected to the broker."""
    user_dir = workdir / "node-red"
    user_dir.mkdir()
    (user_dir / "node_modules").symlink_to(modules)
    (user_dir / "flows.json").write_text(json.dumps(nodes), encoding="utf-8")
    port = free_port()
    settings = {
        "uiHost": "127.0.0.1",
        "uiPort": port,
        "flowFile": "flows.json",
        "credentialSecret": False,
        "disableEditor": True,
        "logging": {"console": {"level": "info"}},
    }
    (user_dir / "settings.js").write_text(f"module.exports = {json.dumps(settings)};\n", encoding="utf-8")
    log_path = workdir / "node-red.log"
    assert NODE is not None
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [NODE, str(modules / "node-red" / "red.js"), "--userDir", str(user_dir), "--settings",
             str(user_dir / "settings.js")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    running = NodeRed(f"http://127.0.0.1:{port}{page}", process, log_path, nodes)
    try:
        deadline = time.monotonic() + NODE_RED_START_S
        wait_http(running.url, deadline, process)
        while "Connected to broker" not in running.log():
            assert time.monotonic() < deadline, f"Node-RED did not connect to the broker:\n{running.log()[-3000:]}"
            time.sleep(0.2)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the browser -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def chromium() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    assert CHROMIUM is not None
    assert CHROMEDRIVER is not None
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--disable-extensions", "--no-first-run"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=ChromeService(executable_path=CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(10)
        yield driver
    finally:
        driver.quit()


@dataclass
class Dashboard:
    """One dashboard's widgets, found by the node id of the flow node with that label."""

    driver: WebDriver
    node_red: NodeRed
    kind: str  # "d1" or "d2"

    def css(self, label: str) -> str:
        node_id = self.node_red.widget_id(label)
        return f'md-card[node-id="{node_id}"]' if self.kind == "d1" else f"#nrdb-ui-widget-{node_id}"

    def until(self, condition: Callable[[WebDriver], Any], what: str) -> Any:
        try:
            return WebDriverWait(self.driver, UI_WAIT_S, poll_frequency=0.2).until(condition)
        except WebDriverException as exc:
            raise AssertionError(f"the dashboard never showed {what}") from exc

    def find(self, css: str) -> WebElement:
        found: WebElement = self.until(lambda d: d.find_element(By.CSS_SELECTOR, css), css)
        return found

    def priority_shown(self, label: str) -> str:
        widget = self.driver.find_element(By.CSS_SELECTOR, self.css(label))
        if self.kind == "d1":
            return widget.find_element(By.CSS_SELECTOR, "p.value").text.strip()
        return str(widget.find_element(By.CSS_SELECTOR, "input").get_attribute("value") or "").strip()

    def wait_priority(self, label: str, value: int) -> None:
        self.until(lambda _d: self.priority_shown(label) == str(value), f"{label} = {value}")

    def priority_up(self, label: str) -> None:
        button = ".up-button" if self.kind == "d1" else '[data-testid="increment"]'
        self.find(f"{self.css(label)} {button}").click()

    def press(self, label: str) -> None:
        self.find(f"{self.css(label)} button").click()

    def choose(self, label: str, option: str) -> None:
        if self.kind == "d1":
            self.find(f"{self.css(label)} md-select").click()
            self.find(f'.md-select-menu-container.md-active md-option[value="{option}"]').click()
        else:
            self.find(f"{self.css(label)} .v-field").click()
            self.until(lambda _d: self.click_option(option), f"the option {option!r} of {label}")

    def click_option(self, option: str) -> bool:
        """Click the option of the open Dashboard 2 menu whose title is `option` (False while it is not ready)."""
        for item in self.driver.find_elements(By.CSS_SELECTOR, ".v-overlay--active .v-list-item"):
            if str(item.get_attribute("textContent") or "").strip() == option:
                try:
                    item.click()
                except WebDriverException:
                    return False  # still opening
                return True
        return False

    def table_rows(self) -> list[list[str]]:
        node_id = self.node_red.table_id()
        css = f'md-card[node-id="{node_id}"]' if self.kind == "d1" else f"#nrdb-ui-widget-{node_id}"
        rows = self.driver.find_elements(By.CSS_SELECTOR, f"{css} tbody tr")
        return [[cell.text.strip() for cell in row.find_elements(By.CSS_SELECTOR, "td")] for row in rows]


# --- the test --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    flow: Path
    page: str
    kind: str


EXAMPLES_UNDER_TEST = [
    pytest.param(Example(EXAMPLES / "flows.json", "/ui/", "d1"), id="dashboard1"),
    pytest.param(Example(EXAMPLES / "flows-dashboard2.json", "/dashboard/chargebus", "d2"), id="dashboard2"),
]
COMMANDS = ("allocator/mode/set", "allocator/charge_now/set", f"evse/{TWC_A_ID}/priority/set")
PRIORITY = f"Priority {TWC_A_ID}"


@contextlib.asynccontextmanager
async def dashboard_on_stack(
    broker: BrokerUnderTest, prefix: str, workdir: Path, modules: Path, example: Example
) -> AsyncIterator[tuple[Stack, Dashboard, int]]:
    """Node-RED and the dashboard open first, on a prefix nobody publishes on yet; then the stack starts.

    Before the stack runs, ↑ on the priority and a mode from the dropdown must send nothing: the widgets do not know
    chargebus' values yet. Yields the stack, the dashboard and the bus index from which nothing was sent by the
    dashboard on its own.
    """
    with node_red(modules, workdir, flow_for(example.flow, broker, prefix), example.page) as red:
        try:
            with chromium() as driver:
                ui = Dashboard(driver, red, example.kind)
                async with Recorder(broker.url, [f"{prefix}/#"]) as early:
                    await asyncio.to_thread(driver.get, red.url)
                    await asyncio.to_thread(ui.priority_up, PRIORITY)
                    await asyncio.to_thread(ui.choose, "Mode", "now")
                    await asyncio.sleep(1.5)  # past the number input's send delay
                    topics = {f"{prefix}/{rest}" for rest in COMMANDS}
                    sent = [(m.topic, m.text) for m in early.messages if m.topic in topics]
                    assert sent == [], "the dashboard sent a command before it knew chargebus' values"
                async with running_stack(broker, prefix, workdir, house=NOON, start_hour=12.0) as stack:
                    yield stack, ui, 0
        except BaseException:
            print(f"--- Node-RED log ---\n{red.log()[-4000:]}")  # noqa: T201 - shown by pytest on failure
            raise


def commands_since(stack: Stack, mark: int) -> list[tuple[str, str]]:
    topics = {stack.topic(rest) for rest in COMMANDS}
    return [(m.topic, m.text) for m in stack.bus.messages[mark:] if m.topic in topics]


async def next_command(stack: Stack, rest: str, mark: int) -> str:
    message = await stack.bus.wait_message(stack.topic(rest), timeout=BUS_WAIT_S, after=mark)
    assert not message.retain, f"{rest} was published retained"
    return message.text


@pytest.mark.timeout(480)  # the first test also waits for npm when nothing is cached
@pytest.mark.parametrize("example", EXAMPLES_UNDER_TEST)
async def test_dashboard_controls_do_what_their_labels_say(
    mqtt_broker: BrokerUnderTest, prefix: str, tmp_path: Path, node_red_modules: Path, example: Example
) -> None:
    async with dashboard_on_stack(mqtt_broker, prefix, tmp_path, node_red_modules, example) as (stack, ui, mark):
        state_topic = stack.topic("allocator/state")

        # The widgets fill in from the retained state; showing it sends nothing.
        await asyncio.to_thread(ui.wait_priority, PRIORITY, DEMO_PRIORITY)
        state = stack.latest_allocator()
        assert state is not None
        assert group_with(state, TWC_A_ID) is not None
        assert group_with(state, TWC_A_ID)["priority"] == DEMO_PRIORITY  # type: ignore[index]

        # The allocations table: one row per charge point, with the allocator's reason for it.
        def table_matches() -> bool:
            rows = ui.table_rows()
            seen = [json.loads(m.payload) for m in stack.bus.messages if m.topic == state_topic][-5:]
            return any(
                len(rows) == len(s["groups"])
                and all(
                    [", ".join(g["evse_ids"]), g["state"], g["reason"]] in ([r[0], r[2], r[4]] for r in rows)
                    for g in s["groups"]
                )
                for s in seen
            )

        await asyncio.to_thread(ui.until, lambda _d: table_matches(), "the allocator's reasons in the table")
        # A browser that opens the dashboard later gets the values at once, and sends nothing either.
        await asyncio.to_thread(ui.driver.refresh)
        await asyncio.to_thread(ui.wait_priority, PRIORITY, DEMO_PRIORITY)
        await asyncio.to_thread(ui.until, lambda _d: table_matches(), "the allocator's reasons after a reload")
        await asyncio.sleep(1.0)  # a late send on initialisation would arrive by now
        assert commands_since(stack, mark) == [], "the dashboard published while it filled in"

        # Priority ↑ from the charge point's 10 sends 11 (as JSON with a transaction), and the allocator takes it.
        before = len(stack.bus.messages)
        await asyncio.to_thread(ui.priority_up, PRIORITY)
        sent = json.loads(await next_command(stack, f"evse/{TWC_A_ID}/priority/set", before))
        assert sent["value"] == DEMO_PRIORITY + 1, sent
        assert str(sent["transaction"]).startswith("node-red-")
        key = f"evse/{TWC_A_ID}/priority"
        await stack.bus.wait_for(
            lambda: (
                {"key": key, "value": DEMO_PRIORITY + 1}
                in [
                    {"key": o["key"], "value": o["value"]}
                    for o in (stack.latest_allocator() or {}).get("overrides", [])
                ]
            ),
            timeout=BUS_WAIT_S,
            what=f"the {key} override at {DEMO_PRIORITY + 1}",
        )
        await asyncio.to_thread(ui.wait_priority, PRIORITY, DEMO_PRIORITY + 1)
        # the state that confirms the new value is shown, not sent again
        assert len(commands_since(stack, before)) == 1, commands_since(stack, before)

        # "config value" clears the override: the number shows the charge point's priority again.
        before = len(stack.bus.messages)
        await asyncio.to_thread(ui.press, f"{PRIORITY}: config value")
        assert await next_command(stack, f"evse/{TWC_A_ID}/priority/set", before) == "default"
        await stack.bus.wait_for(
            lambda: all(o["key"] != key for o in (stack.latest_allocator() or {}).get("overrides", [{"key": key}])),
            timeout=BUS_WAIT_S,
            what=f"the {key} override cleared",
        )
        await asyncio.to_thread(ui.wait_priority, PRIORITY, DEMO_PRIORITY)
        assert len(commands_since(stack, before)) == 1, commands_since(stack, before)

        # Mode: the dropdown sends the mode chosen and the allocator runs in it.
        state = stack.latest_allocator()
        assert state is not None
        assert state["mode"] != "now"
        before = len(stack.bus.messages)
        await asyncio.to_thread(ui.choose, "Mode", "now")
        assert await next_command(stack, "allocator/mode/set", before) == "now"
        await stack.bus.wait_for(
            lambda: (stack.latest_allocator() or {}).get("mode") == "now", timeout=BUS_WAIT_S, what="mode now"
        )

        # Charge now (1 h): 3600 s from now on the services' clock; Cancel ends it.
        before = len(stack.bus.messages)
        await asyncio.to_thread(ui.press, "Charge now (1 h)")
        assert await next_command(stack, "allocator/charge_now/set", before) == "3600"
        state = await stack.bus.wait_for(
            lambda: (s := stack.latest_allocator()) is not None and s.get("charge_now_until") is not None and s,
            timeout=BUS_WAIT_S,
            what="charge_now_until set",
        )
        ahead = datetime.fromisoformat(state["charge_now_until"]).timestamp() - stack.world.clock.time()
        assert 3300 < ahead <= 3600, ahead
        before = len(stack.bus.messages)
        await asyncio.to_thread(ui.press, "Cancel charge now")
        assert await next_command(stack, "allocator/charge_now/set", before) == "0"
        await stack.bus.wait_for(
            lambda: (s := stack.latest_allocator()) is not None and s.get("charge_now_until") is None,
            timeout=BUS_WAIT_S,
            what="charge_now_until cleared",
        )

        commands = {stack.topic(rest) for rest in COMMANDS}
        errors = [m.json() for m in stack.bus.messages[mark:] if m.topic.endswith("/error")]
        assert [error for error in errors if error.get("topic") in commands] == [], "a command was refused"
        stack.assert_alive()
