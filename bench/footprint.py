"""Memory and start-up time of each service, run as users run it, in both modes: each in its own process, and all
four in one process (`chargebus run --all`), on a local broker.

Cold start: from just before the process is started (`python -m <module> --config …`) until its `online` on
`<p>/<service>/status` arrives at a client subscribed beforehand; `--runs` times each (5), fresh topic prefix and
state directory every time (the history service creates its SQLite database each time). Median and worst.

Memory: then all four run together for `--seconds` (10) with traffic: a grid meter every 0.5 s (a changing export,
delays 0, so the allocator sends new setpoints), a TWC slave simulator on a pty with a car drawing what it is
offered (twc-bridge), one car behind the fake Fleet API (tesla-bridge polls it and gets setpoints), and the history
service recording all of it into SQLite. VmRSS and VmHWM (peak) from /proc/<pid>/status at the end, in MiB.
`footprint_traffic_msgs` counts the messages under the run's prefix meanwhile, to show there was traffic.

One process: `python -m chargebus run twc-bridge tesla-bridge allocator history` with the same config and traffic;
start = process start → the last of the four `online`s (`--runs` times), then VmRSS/VmHWM of that one process after
`--seconds` of traffic. Goal: ≤ 72 MB.

Bytecode: the services run with a bytecode cache of their own (`PYTHONPYCACHEPREFIX` in the work directory, filled
by one unmeasured import of every service first), as in the Docker image, which compiles it at build time. Without
one (`--no-bytecode`, or a shell with PYTHONDONTWRITEBYTECODE=1 and no __pycache__) every start compiles every module:
slower, and a peak a few MB higher.

Baselines, measured in the same run: the bare interpreter (`python -c pass`) and `python -c "import chargebus.mqtt"`
(start time and peak RSS). Goals: RSS ≤ 50 MB and cold start ≤ 1.5 s per service.

    uv run python bench/footprint.py [--runs 5] [--seconds 10] [--modes separate,one] [--no-bytecode]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
from chargebus.broker import local_broker
from chargebus.cli import installed_services
from chargebus_sim.fleet_api import FakeFleetApi
from chargebus_sim.twc_slave import SlaveSpec, TwcSlaveSim

VIN = "5YJ3E1EA8KF000001"
TWC_ID = 0x4A1B
STATUS_TIMEOUT_S = 30.0


@dataclass
class Sims:
    """What the bridges talk to; one of each for the whole benchmark."""

    twc: TwcSlaveSim
    fleet: FakeFleetApi


def write_config(workdir: Path, url: str, prefix: str, sims: Sims) -> Path:
    """One chargebus.toml with every section; each service reads only its own."""
    state_dir = workdir / "state"
    state_dir.mkdir(parents=True)
    token_file = state_dir / "tesla-token.json"
    token_file.write_text(json.dumps(sims.fleet.token_file_content()), encoding="utf-8")
    config = workdir / "chargebus.toml"
    config.write_text(
        f'state_dir = "{state_dir}"\n'
        f'[mqtt]\nurl = "{url}"\nprefix = "{prefix}"\nha_discovery = true\n'
        f'[twc]\nport = "{sims.twc.port}"\nvoltage_v = 230\nwiring_max_amps = 32\nbus_max_amps = 32\n'
        '[allocator]\nmode = "solar"\nenable_delay_s = 0\ndisable_delay_s = 0\nmin_on_s = 0\nmin_off_s = 0\n'
        f'[history]\ndatabase = "sqlite:///{state_dir / "history.sqlite"}"\n'
        "[tesla]\n"
        f'api_base = "{sims.fleet.url}"\ncommand_base = "{sims.fleet.proxy_url}"\n'
        f'token_url = "{sims.fleet.token_url}"\nclient_id = "{sims.fleet.client_id}"\n'
        f'token_file = "{token_file}"\nteslamate_prefix = ""\n'
        f'[[tesla.vehicles]]\nvin = "{VIN}"\nname = "Model 3"\n',
        encoding="utf-8",
    )
    return config


#: What every measured process gets on top of this one's environment (set by `use_bytecode_cache`).
EXTRA_ENV: dict[str, str] = {}
DROPPED_ENV = {"CHARGEBUS_CONFIG", "CHARGEBUS_MQTT_URL", "CHARGEBUS_TOPIC_PREFIX", "CHARGEBUS_TIME_SCALE"}


def child_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in DROPPED_ENV} | EXTRA_ENV
    if "PYTHONPYCACHEPREFIX" in EXTRA_ENV:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def use_bytecode_cache(workdir: Path) -> None:
    """A bytecode cache for the measured processes, filled now by importing every service once (not measured)."""
    EXTRA_ENV["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    modules = [*installed_services().values(), "chargebus.cli"]
    with contextlib.suppress(ImportError):
        __import__("chargebus.supervisor")
        modules.append("chargebus.supervisor")
    code = "import importlib\nfor m in " + repr(modules) + ": importlib.import_module(m)"
    subprocess.run([sys.executable, "-c", code], env=child_env(), check=True)


def start_service(module: str, config: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    env = child_env()
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args, "--config", str(config), "--log-level", "info"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.returncode


@dataclass
class Watcher:
    """First arrival (perf_counter) of `online` per status topic, and a count of all messages seen."""

    online_at: dict[str, float] = field(default_factory=dict)
    messages: int = 0
    topics: Counter[str] = field(default_factory=Counter)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def pump(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            arrived = time.perf_counter()
            self.messages += 1
            topic = message.topic.value
            self.topics[topic] += 1
            if topic.endswith("/status") and message.payload == b"online":
                self.online_at.setdefault(topic, arrived)
                self.changed.set()

    async def until_online(
        self, topic: str, process: subprocess.Popen[bytes], timeout_s: float = STATUS_TIMEOUT_S
    ) -> float:
        """When `online` arrived on `topic`; ServiceFailedError if the process ends or times out first."""
        deadline = time.perf_counter() + timeout_s
        while topic not in self.online_at:
            left = deadline - time.perf_counter()
            if left <= 0 or process.poll() is not None:
                code = process.poll()
                raise ServiceFailedError(
                    f"no online on {topic}: " + ("timed out" if code is None else f"exited {code}")
                )
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 0.1))
        return self.online_at[topic]


class ServiceFailedError(Exception):
    """A service process ended, or never said `online`."""


def proc_status_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a live process, in MB (MiB, as /proc reports kB)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        key, _, rest = line.partition(":")
        if key in {"VmRSS", "VmHWM"}:
            values[key] = int(rest.split()[0]) / 1024
    return values


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text(encoding="utf-8").split()] if path.exists() else []


@dataclass
class Rig:
    """The broker client, its watcher, the simulators and a work directory: what every measurement needs."""

    client: aiomqtt.Client
    watcher: Watcher
    broker_url: str
    sims: Sims
    workdir: Path
    keep: bool = False

    async def cold_starts(self, runs: int) -> tuple[dict[str, list[float]], dict[str, str]]:
        """Cold-start times per service, and the module each was finally run with.

        The module is the service's entry point (`chargebus.cli.installed_services()`, what `chargebus run` and the
        demo start). If that process dies before it is online, the failure is reported on stderr and the package
        itself (`python -m <package>`, its `__main__`) is measured instead, so one broken entry point does not hide
        the rest.
        """
        results: dict[str, list[float]] = {}
        modules: dict[str, str] = {}
        for service, entry_point in installed_services().items():
            module = entry_point
            times = results.setdefault(service, [])
            while len(times) < runs:
                try:
                    times.append(await self.cold_start(service, module, f"{len(times)}"))
                except ServiceFailedError as exc:
                    package = module.split(".", 1)[0]
                    print(f"# {service}: python -m {module}: {exc}", file=sys.stderr)
                    if package == module:
                        raise
                    print(f"# {service}: measuring python -m {package} instead", file=sys.stderr)
                    module = package
            modules[service] = module
        return results, modules

    async def cold_start(self, service: str, module: str, run: str) -> float:
        prefix = f"fp-{service}-{module.replace('.', '-')}-{run}"
        topic = f"{prefix}/{service}/status"
        await self.client.subscribe(topic, qos=1)
        rundir = self.workdir / prefix
        config = write_config(rundir, self.broker_url, prefix, self.sims)
        log = rundir / f"{service}.log"
        started = time.perf_counter()
        process = start_service(module, config, log)
        try:
            online = await self.watcher.until_online(topic, process)
        except ServiceFailedError as exc:
            last = log.read_text(errors="replace").strip().splitlines()[-1:]
            raise ServiceFailedError(f"{exc}; its last log line: {' '.join(last)}") from None
        finally:
            code = await asyncio.to_thread(stop, process)
            await self.client.unsubscribe(topic)
        if code != 0:
            print(f"# {service} run {run} exited {code} on SIGTERM; log in {rundir}", file=sys.stderr)
        return online - started

    async def traffic(self, prefix: str, seconds: float) -> None:
        """A grid meter every 0.5 s: export swinging between 3 and 9 kW, so the setpoints keep changing."""
        deadline = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < deadline:
            export_w = 3000 + 600 * (n % 11)
            await self.client.publish(f"{prefix}/power/grid", str(-export_w), qos=0, retain=True)
            n += 1
            await asyncio.sleep(0.5)

    async def steady_memory(self, modules: dict[str, str], seconds: float) -> tuple[dict[str, dict[str, float]], int]:
        """All four services together with traffic: memory per service after `seconds`, and messages seen."""
        prefix = "fp-all"
        await self.client.subscribe(f"{prefix}/#", qos=0)
        rundir = self.workdir / prefix
        config = write_config(rundir, self.broker_url, prefix, self.sims)
        processes = {
            service: start_service(module, config, rundir / f"{service}.log") for service, module in modules.items()
        }
        try:
            for service, process in processes.items():
                await self.watcher.until_online(f"{prefix}/{service}/status", process)
            before = self.watcher.messages
            await self.traffic(prefix, seconds)
            memory = {}
            for service, process in processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{service} died during the run; log in {rundir}")
                memory[service] = proc_status_mb(process.pid)
                if extra := children(process.pid):
                    print(f"# {service} has child processes {extra}: not counted", file=sys.stderr)
            seen = self.watcher.messages - before
            if self.keep:
                for topic, count in sorted(self.watcher.topics.items()):
                    if topic.startswith(prefix):
                        print(f"# {count:5d} {topic}", file=sys.stderr)
        finally:
            for process in processes.values():
                await asyncio.to_thread(stop, process)
        return memory, seen


async def one_process(rig: Rig, services: list[str], runs: int, seconds: float) -> tuple[list[float], dict[str, float]]:
    """All `services` in one `chargebus run` process: start times (→ the last `online`), then its memory after
    `seconds` of traffic."""
    starts = []
    for run in range(runs + 1):  # the last run stays up for the memory reading
        prefix = f"fp-one-{run}"
        topics = [f"{prefix}/{service}/status" for service in services]
        for topic in topics:
            await rig.client.subscribe(topic, qos=1)
        if run == runs:
            await rig.client.subscribe(f"{prefix}/#", qos=0)
        rundir = rig.workdir / prefix
        config = write_config(rundir, rig.broker_url, prefix, rig.sims)
        started = time.perf_counter()
        process = start_service("chargebus", config, rundir / "run.log", "run", *services)
        try:
            online = [await rig.watcher.until_online(topic, process) for topic in topics]
            if run < runs:
                starts.append(max(online) - started)
                continue
            await rig.traffic(prefix, seconds)
            if process.poll() is not None:
                raise RuntimeError(f"chargebus run died during the run; log in {rundir}")
            memory = proc_status_mb(process.pid)
            if extra := children(process.pid):
                print(f"# chargebus run has child processes {extra}: not counted", file=sys.stderr)
        finally:
            code = await asyncio.to_thread(stop, process)
            for topic in topics:
                await rig.client.unsubscribe(topic)
        if code != 0:
            print(f"# chargebus run exited {code} on SIGTERM; log in {rundir}", file=sys.stderr)
    return starts, memory


def baseline(code: str, runs: int) -> tuple[list[float], float]:
    """Start-to-exit times of `python -c <code>`, and its peak RSS in MB (VmHWM: per process image, reset by exec,
    unlike getrusage's ru_maxrss, which keeps the forking parent's)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=child_env(), check=True)
        times.append(time.perf_counter() - started)
    probe = f"{code}\nimport sys\nsys.stdout.write(open('/proc/self/status').read())"
    status = subprocess.run(
        [sys.executable, "-c", probe], env=child_env(), check=True, capture_output=True, text=True
    ).stdout
    peak_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return times, peak_kb / 1024


async def measure(workdir: Path, broker_url: str, args: argparse.Namespace) -> None:
    host, port = broker_url.removeprefix("mqtt://").split(":")
    spec = SlaveSpec(TWC_ID, plugged_in=True, vin=VIN, lag_s=0.5)
    async with (
        TwcSlaveSim([spec]) as twc,
        FakeFleetApi() as fleet,
        aiomqtt.Client(host, int(port)) as client,
    ):
        fleet.add_car(VIN, state="online", charging_state="Stopped", charge_amps=16)
        watcher = Watcher()
        pump = asyncio.create_task(watcher.pump(client))
        try:
            rig = Rig(client, watcher, broker_url, Sims(twc, fleet), workdir, keep=args.keep)
            starts, modules = await rig.cold_starts(args.runs)
            memory, seen = await rig.steady_memory(modules, args.seconds) if "separate" in args.modes else ({}, 0)
            together_starts, together = (
                await one_process(rig, list(modules), args.runs, args.seconds) if "one" in args.modes else ([], {})
            )
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
    for service, times in starts.items():
        name = f"footprint_{service.replace('-', '_')}"
        if modules[service] != installed_services()[service]:
            print(f"# {service} measured as python -m {modules[service]}")
        if service in memory:
            print(f"{name}_rss_mb {memory[service]['VmRSS']:.1f} MB")
            print(f"{name}_peak_rss_mb {memory[service]['VmHWM']:.1f} MB")
        print(f"{name}_cold_start_s {statistics.median(times):.3f} s")
        print(f"{name}_cold_start_max_s {max(times):.3f} s")
    if memory:
        print(f"footprint_all_services_rss_mb {sum(m['VmRSS'] for m in memory.values()):.1f} MB")
    if together:
        print(f"footprint_one_process_rss_mb {together['VmRSS']:.1f} MB")
        print(f"footprint_one_process_peak_rss_mb {together['VmHWM']:.1f} MB")
        print(f"footprint_one_process_start_s {statistics.median(together_starts):.3f} s")
        print(f"footprint_one_process_start_max_s {max(together_starts):.3f} s")
    print(f"footprint_traffic_msgs {seen} msgs")
    print(f"footprint_twc_offers {len(twc.offered_amps(TWC_ID))} frames")
    print(f"footprint_fleet_api_calls {len(fleet.calls)} calls")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="cold starts per service")
    parser.add_argument("--seconds", type=float, default=10.0, help="traffic before memory is read")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (configs, service logs)")
    parser.add_argument(
        "--modes",
        type=lambda text: set(text.split(",")),
        default={"separate", "one"},
        help="separate (each service its own process), one (all in one `chargebus run`), or both (default)",
    )
    parser.add_argument("--no-bytecode", action="store_true", help="no bytecode cache: every start compiles")
    args = parser.parse_args()
    with workspace(keep=args.keep) as workdir:
        if not args.no_bytecode:
            use_bytecode_cache(workdir)
        for label, code in (("python", "pass"), ("import_chargebus_mqtt", "import chargebus.mqtt")):
            times, peak = baseline(code, args.runs)
            print(f"baseline_{label}_start_s {statistics.median(times):.3f} s")
            print(f"baseline_{label}_start_max_s {max(times):.3f} s")
            print(f"baseline_{label}_peak_rss_mb {peak:.1f} MB")
        broker = local_broker(workdir).start()
        try:
            bytecode = "no bytecode cache" if args.no_bytecode else "bytecode cached"
            print(
                f"broker {broker.kind}, {args.runs} cold starts per service, {args.seconds:g} s of traffic, {bytecode}"
            )
            asyncio.run(measure(workdir, broker.url, args))
        finally:
            broker.stop()
    return 0


@contextlib.contextmanager
def workspace(*, keep: bool) -> Iterator[Path]:
    """A temporary directory, kept (and named on stderr) with `keep` or when the benchmark fails, for its logs."""
    path = Path(tempfile.mkdtemp(prefix="chargebus-footprint-"))
    try:
        yield path
    except BaseException:
        print(f"# logs kept in {path}", file=sys.stderr)
        raise
    if keep:
        print(f"# logs kept in {path}", file=sys.stderr)
    else:
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
