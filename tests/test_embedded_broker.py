"""The embedded broker (amqtt) with aiomqtt: retained messages, a retained LWT on a killed client, QoS 1."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiomqtt
from chargebus.broker import embedded_broker

from tests.support.bus import Recorder, ServiceProcess, python_script


async def test_embedded_broker_keeps_retained_delivers_lwt_and_qos1(tmp_path: Path) -> None:
    broker = embedded_broker(tmp_path).start()
    try:
        (tmp_path / "none.toml").write_text("", encoding="utf-8")
        probe = ServiceProcess(
            python_script("tests/support/probe_service.py", "--config", str(tmp_path / "none.toml")),
            {"CHARGEBUS_MQTT_URL": broker.url, "CHARGEBUS_TOPIC_PREFIX": "emb"},
        ).start(tmp_path / "probe.log")
        async with Recorder(broker.url, ["emb/#"]) as bus:
            # the service falls back to MQTT 3.1.1 by itself and comes online
            await bus.wait_message("emb/probe/status", lambda m: m.text == "online", timeout=15)
            # its retained state too, before it is killed (on a loaded machine it may come a moment after `online`)
            await bus.wait_message("emb/probe/state", timeout=15)
            probe.kill(signal.SIGKILL)
            probe.wait()
            await bus.wait_message("emb/probe/status", lambda m: m.text == "offline", timeout=10)
            async with aiomqtt.Client("127.0.0.1", broker.port) as sender:
                for i in range(200):
                    await sender.publish("emb/qos1", str(i), qos=1)
            await bus.wait_for(lambda: len(bus.on("emb/qos1")) == 200, timeout=10, what="200 QoS 1 messages")
        async with Recorder(broker.url, ["emb/probe/#"]) as late:
            state = await late.wait_message("emb/probe/state", timeout=5)
            assert state.retain
            status = await late.wait_message("emb/probe/status", timeout=5)
            assert status.text == "offline"
        await asyncio.sleep(0)
    finally:
        broker.stop()
