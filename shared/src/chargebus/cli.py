"""The umbrella `chargebus` command: schema, topics, config check, run, demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib.metadata import entry_points

import aiomqtt

from chargebus.config import (
    EXIT_CONFIG_ERROR,
    FULL_CONFIG_SERVICE,
    SERVICE_CONFIGS,
    ConfigError,
    MqttConfig,
    load_config,
)
from chargebus.schema import json_schemas
from chargebus.topics import DEFAULT_PREFIX, Topics, topic_table

#: Services announce themselves with an entry point in this group: name = "package.module:main".
SERVICE_ENTRY_POINTS = "chargebus.services"


#: Packages add subcommands with an entry point in this group: name = "package.module:main", where main takes the
#: remaining arguments (e.g. `chargebus history export …` → chargebus_history's command).
COMMAND_ENTRY_POINTS = "chargebus.commands"


def installed_commands() -> dict[str, str]:
    """Subcommand name → "module:function" for every package that adds one."""
    return dict(sorted((point.name, point.value) for point in entry_points(group=COMMAND_ENTRY_POINTS)))


def _cmd_plugin(args: argparse.Namespace) -> int:
    return _run_plugin(args.command, args.plugin_args)


def _run_plugin(name: str, argv: list[str]) -> int:
    point = next(p for p in entry_points(group=COMMAND_ENTRY_POINTS) if p.name == name)
    command = point.load()
    code: int | None = command(argv)
    return code or 0


BUILT_IN_COMMANDS = frozenset({"schema", "topics", "config", "run", "health", "demo"})


def installed_services() -> dict[str, str]:
    """Service name → module to run with `python -m`, for every service package installed here."""
    found = {}
    for point in entry_points(group=SERVICE_ENTRY_POINTS):
        found[point.name] = point.value.split(":", 1)[0]
    return dict(sorted(found.items()))


def _cmd_schema(args: argparse.Namespace) -> int:
    schemas = json_schemas()
    if args.name:
        if args.name not in schemas:
            print(f"unknown payload {args.name!r}; known: {', '.join(schemas)}", file=sys.stderr)
            return 2
        schemas = {args.name: schemas[args.name]}
    print(json.dumps(schemas, indent=2, ensure_ascii=False))
    return 0


def _cmd_topics(args: argparse.Namespace) -> int:
    print(topic_table(args.prefix))
    return 0


def _cmd_config_check(args: argparse.Namespace) -> int:
    config_cls = SERVICE_CONFIGS.get(args.service, FULL_CONFIG_SERVICE)
    try:
        load_config(config_cls, args.config)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return EXIT_CONFIG_ERROR
    print("config: ok")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    available = installed_services()
    unknown = [name for name in args.services if name not in available]
    if unknown:
        print(
            f"unknown service {', '.join(unknown)}; installed: {', '.join(available) or 'none'}",
            file=sys.stderr,
        )
        return 2
    extra = (["--config", args.config] if args.config else []) + ["--log-level", args.log_level]
    return run_processes([[sys.executable, "-m", available[name], *extra] for name in args.services])


def run_processes(commands: list[list[str]]) -> int:
    """Run service processes side by side; SIGINT/SIGTERM stop them all; the first failure stops the rest."""
    children = [subprocess.Popen(command) for command in commands]  # noqa: S603 - our own interpreter and modules
    stopping = False

    def stop(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.1)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    codes = [child.returncode for child in children]
    return next((code for code in codes if code not in (0, -signal.SIGTERM)), 0)


def _cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 while the service's retained status says online: the container healthcheck."""
    config = load_config(SERVICE_CONFIGS.get(args.service, FULL_CONFIG_SERVICE), args.config)
    topic = Topics(config.mqtt.prefix).status(args.service)
    status = asyncio.run(_read_retained(config.mqtt, topic))
    print(f"{args.service}: {status or 'no status'}")
    return 0 if status == "online" else 1


async def _read_retained(mqtt: MqttConfig, topic: str, timeout_s: float = 5.0) -> str | None:
    username, password = mqtt.credentials()
    context = ssl.create_default_context(cafile=str(mqtt.ca_file) if mqtt.ca_file else None) if mqtt.tls else None
    protocol = aiomqtt.ProtocolVersion.V311
    async with aiomqtt.Client(
        mqtt.host, mqtt.port, username=username, password=password, tls_context=context, protocol=protocol
    ) as client:
        await client.subscribe(topic, qos=1)
        try:
            async with asyncio.timeout(timeout_s):
                async for message in client.messages:
                    return bytes(message.payload).decode() if isinstance(message.payload, bytes) else None
        except TimeoutError:
            return None
    return None


def _cmd_demo(args: argparse.Namespace) -> int:
    try:
        from chargebus_sim.demo import run_demo  # noqa: PLC0415 - the demo needs the simulators, installed apart
    except ImportError:
        print("the demo needs the chargebus-sim package: run it from the source tree with `make demo`", file=sys.stderr)
        return 2
    code: int = run_demo(prefix=args.prefix, time_scale=args.time_scale, duration_s=args.duration)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chargebus", description="chargebus: EV charging control on MQTT")
    sub = parser.add_subparsers(dest="command", required=True)

    schema = sub.add_parser("schema", help="print the JSON Schema of every MQTT payload")
    schema.add_argument("name", nargs="?", help="one payload, e.g. EvseState")
    schema.set_defaults(func=_cmd_schema)

    topics = sub.add_parser("topics", help="print the topic table")
    topics.add_argument("--prefix", default=os.environ.get("CHARGEBUS_TOPIC_PREFIX", DEFAULT_PREFIX))
    topics.set_defaults(func=_cmd_topics)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate chargebus.toml (exit 2 with one line per problem)")
    check.add_argument("--config", help="path of chargebus.toml")
    check.add_argument("--service", choices=sorted(SERVICE_CONFIGS), help="only the sections this service reads")
    check.set_defaults(func=_cmd_config_check)

    run = sub.add_parser("run", help="run one or more services in the foreground")
    run.add_argument("services", nargs="+", metavar="service")
    run.add_argument("--config", help="path of chargebus.toml")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=_cmd_run)

    health = sub.add_parser("health", help="exit 0 if the service's status on the broker is online")
    health.add_argument("service", choices=sorted(SERVICE_CONFIGS))
    health.add_argument("--config", help="path of chargebus.toml")
    health.set_defaults(func=_cmd_health)

    demo = sub.add_parser("demo", help="broker, simulators and services with a live view")
    demo.add_argument("--prefix", default=DEFAULT_PREFIX)
    demo.add_argument("--time-scale", type=float, default=60.0, help="simulated seconds per real second")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many real seconds")
    demo.set_defaults(func=_cmd_demo)

    for name in installed_commands():
        if name in BUILT_IN_COMMANDS:
            continue  # a built-in command always wins
        plugin = sub.add_parser(name, help=f"{name} tools (from its package)", add_help=False)
        plugin.add_argument("plugin_args", nargs=argparse.REMAINDER)
        plugin.set_defaults(func=_cmd_plugin)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in installed_commands() and arguments[0] not in BUILT_IN_COMMANDS:
        # handed over untouched: argparse would take the plugin's own --help and options for ours
        return _run_plugin(arguments[0], arguments[1:])
    args = build_parser().parse_args(arguments)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
