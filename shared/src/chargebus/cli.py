"""The umbrella `chargebus` command: schema, topics, config check, run, health; packages add more (`demo`, `sim`,
`history`) through the `chargebus.commands` entry points, so this package never imports them."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any

import aiomqtt

from chargebus.clock import clock_from_env
from chargebus.config import (
    EXIT_CONFIG_ERROR,
    FULL_CONFIG_SERVICE,
    SERVICE_CONFIGS,
    CommonConfig,
    ConfigError,
    MqttConfig,
    load_config,
)
from chargebus.reference import config_markdown, payloads_markdown, topics_markdown
from chargebus.runner import SERVICE_ENTRY_POINTS, ServiceEntry, log_loop_error, setup_logging
from chargebus.schema import json_schemas
from chargebus.topics import DEFAULT_PREFIX, Topics, topic_table

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


BUILT_IN_COMMANDS = frozenset({"schema", "topics", "config", "run", "health"})

#: Commands that other packages add, and the hint printed when the package that adds one is not installed.
COMMANDS_ELSEWHERE = {
    "demo": "the demo needs the chargebus-sim package: run it from the source tree with `make demo`",
    "sim": "the simulators need the chargebus-sim package: run them from the source tree",
}


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
    if args.markdown:
        print(payloads_markdown(list(schemas)))
    else:
        print(json.dumps(schemas, indent=2, ensure_ascii=False))
    return 0


def _cmd_topics(args: argparse.Namespace) -> int:
    print(topics_markdown(args.prefix) if args.markdown else topic_table(args.prefix))
    return 0


def _cmd_config_keys(_args: argparse.Namespace) -> int:
    print(config_markdown())
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
    names = list(available) if args.all else list(dict.fromkeys(args.services))
    if not names:
        print("name the services to run, or --all", file=sys.stderr)
        return 2
    unknown = [name for name in names if name not in available]
    if unknown:
        print(
            f"unknown service {', '.join(unknown)}; installed: {', '.join(available) or 'none'}",
            file=sys.stderr,
        )
        return 2
    if args.processes:
        extra = (["--config", args.config] if args.config else []) + ["--log-level", args.log_level]
        return run_processes([[sys.executable, "-m", available[name], *extra] for name in names])
    return run_in_one_process(names, args.config, args.log_level)


def run_in_one_process(names: list[str], config_path: str | None, log_level: str) -> int:
    """The named services in this interpreter and event loop (`chargebus.supervisor`); exit 2 on a config problem
    of any of them, before any starts."""
    from chargebus.supervisor import EntryError, Supervisor, load_entries  # noqa: PLC0415 - only for `run`

    try:
        entries = load_entries(names)
    except EntryError as exc:
        print(exc, file=sys.stderr)
        return 2
    configs: list[tuple[ServiceEntry[Any], CommonConfig]] = []
    problems: dict[str, None] = {}  # the [mqtt] section is every service's: each problem once
    for entry in entries:
        try:
            configs.append((entry, entry.load_config(config_path)))
        except ConfigError as exc:
            problems.update(dict.fromkeys(exc.problems))
    try:
        clock = clock_from_env()
    except ValueError as exc:
        problems[f"config: {exc}"] = None
    if problems:
        for line in problems:
            print(line, file=sys.stderr)
        return EXIT_CONFIG_ERROR
    setup_logging(log_level)

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(log_loop_error)
        await Supervisor(configs, config_path=config_path, clock=clock).run()

    asyncio.run(main())
    return 0


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
    """Exit 0 while every named service's retained status says online: the container healthcheck."""
    names = list(installed_services()) if args.all else list(dict.fromkeys(args.services))
    if not names:
        print("name the services to check, or --all", file=sys.stderr)
        return 2
    if unknown := [name for name in names if name not in SERVICE_CONFIGS]:
        print(f"unknown service {', '.join(unknown)}; known: {', '.join(sorted(SERVICE_CONFIGS))}", file=sys.stderr)
        return 2
    # every service reads the same [mqtt] section: one connection asks for all the statuses
    config = load_config(SERVICE_CONFIGS.get(names[0], FULL_CONFIG_SERVICE), args.config)
    topics = {name: Topics(config.mqtt.prefix).status(name) for name in names}
    statuses = asyncio.run(_read_retained(config.mqtt, list(topics.values())))
    for name, topic in topics.items():
        print(f"{name}: {statuses.get(topic) or 'no status'}")
    return 0 if all(statuses.get(topic) == "online" for topic in topics.values()) else 1


async def _read_retained(mqtt: MqttConfig, topics: list[str], timeout_s: float = 5.0) -> dict[str, str]:
    """The retained payload of each topic that has one, waiting `timeout_s` at most for those that do not."""
    username, password = mqtt.credentials()
    context = ssl.create_default_context(cafile=str(mqtt.ca_file) if mqtt.ca_file else None) if mqtt.tls else None
    protocol = aiomqtt.ProtocolVersion.V311
    found: dict[str, str] = {}
    async with aiomqtt.Client(
        mqtt.host, mqtt.port, username=username, password=password, tls_context=context, protocol=protocol
    ) as client:
        for topic in topics:
            await client.subscribe(topic, qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                async for message in client.messages:
                    payload = message.payload
                    found[message.topic.value] = bytes(payload).decode() if isinstance(payload, bytes) else ""
                    if set(topics) <= set(found):
                        break
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chargebus", description="chargebus: EV charging control on MQTT")
    sub = parser.add_subparsers(dest="command", required=True)

    schema = sub.add_parser("schema", help="print the JSON Schema of every MQTT payload")
    schema.add_argument("name", nargs="?", help="one payload, e.g. EvseState")
    schema.add_argument("--markdown", action="store_true", help="field tables in Markdown instead of JSON Schema")
    schema.set_defaults(func=_cmd_schema)

    topics = sub.add_parser("topics", help="print the topic table")
    topics.add_argument("--prefix", default=os.environ.get("CHARGEBUS_TOPIC_PREFIX", DEFAULT_PREFIX))
    topics.add_argument("--markdown", action="store_true", help="a Markdown table (as in docs/contract.md)")
    topics.set_defaults(func=_cmd_topics)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate chargebus.toml (exit 2 with one line per problem)")
    check.add_argument("--config", help="path of chargebus.toml")
    check.add_argument("--service", choices=sorted(SERVICE_CONFIGS), help="only the sections this service reads")
    check.set_defaults(func=_cmd_config_check)
    keys = config_sub.add_parser("keys", help="every key of chargebus.toml with type, default and limits (Markdown)")
    keys.set_defaults(func=_cmd_config_keys)

    run = sub.add_parser(
        "run",
        help="run services in the foreground, in one process (each its own MQTT client, restarted alone on a crash)",
    )
    run.add_argument("services", nargs="*", metavar="service")
    run.add_argument("--all", action="store_true", help="every installed service")
    run.add_argument("--processes", action="store_true", help="one process per service instead")
    run.add_argument("--config", help="path of chargebus.toml")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=_cmd_run)

    health = sub.add_parser("health", help="exit 0 if the services' status on the broker is online")
    health.add_argument("services", nargs="*", metavar="service", help=", ".join(sorted(SERVICE_CONFIGS)))
    health.add_argument("--all", action="store_true", help="every installed service (the all-in-one container)")
    health.add_argument("--config", help="path of chargebus.toml")
    health.set_defaults(func=_cmd_health)

    commands = installed_commands()
    for name in commands:
        if name in BUILT_IN_COMMANDS:
            continue  # a built-in command always wins
        plugin = sub.add_parser(name, help=f"{name} tools (from its package)", add_help=False)
        plugin.add_argument("plugin_args", nargs=argparse.REMAINDER)
        plugin.set_defaults(func=_cmd_plugin)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    commands = installed_commands()
    if arguments and arguments[0] in commands and arguments[0] not in BUILT_IN_COMMANDS:
        # handed over untouched: argparse would take the plugin's own --help and options for ours
        return _run_plugin(arguments[0], arguments[1:])
    if arguments and arguments[0] in COMMANDS_ELSEWHERE:
        print(COMMANDS_ELSEWHERE[arguments[0]], file=sys.stderr)
        return 2
    args = build_parser().parse_args(arguments)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
