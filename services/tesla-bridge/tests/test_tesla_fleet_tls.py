"""The command proxy's self-signed certificate is trusted through `ca_file`, and only through it."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from chargebus.clock import FakeClock
from chargebus_sim.fleet_api import FakeFleetApi
from chargebus_tesla.errors import FleetUnavailable
from chargebus_tesla.fleet import FleetClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VIN = "5YJ3E1EA8KF000001"


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tesla-http-proxy")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "proxy.crt", directory / "proxy.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture
async def tls_sim(tmp_path: Path, clock: FakeClock) -> AsyncIterator[tuple[FakeFleetApi, Path]]:
    cert_path, key_path = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    api = FakeFleetApi(clock=clock.time, proxy_ssl=context)
    api.add_car(VIN, state="online")
    await api.start()
    yield api, cert_path
    await api.stop()


def client_for(api: FakeFleetApi, tmp_path: Path, clock: FakeClock, ca_file: str) -> FleetClient:
    token_file = tmp_path / "token.json"
    token_file.write_text(json.dumps(api.token_file_content()))

    async def no_wait(_seconds: float) -> None:
        return None

    return FleetClient(
        api_base=api.url,
        command_base=api.proxy_url,
        token_url=api.token_url,
        client_id=api.client_id,
        token_file=token_file,
        clock=clock,
        ca_file=ca_file,
        sleep=no_wait,
    )


async def test_commands_reach_the_proxy_over_tls_with_its_ca(
    tls_sim: tuple[FakeFleetApi, Path], tmp_path: Path, clock: FakeClock
) -> None:
    api, cert_path = tls_sim
    assert api.proxy_url.startswith("https://")
    async with client_for(api, tmp_path, clock, str(cert_path)) as client:
        assert (await client.charge_start(VIN)).result
        assert await client.vehicle_state(VIN) == "online"  # the data host keeps its own trust
    assert api.count("command", host="proxy") == 1


async def test_without_the_ca_the_proxy_is_not_trusted(
    tls_sim: tuple[FakeFleetApi, Path], tmp_path: Path, clock: FakeClock
) -> None:
    api, _ = tls_sim
    async with client_for(api, tmp_path, clock, "") as client:
        with pytest.raises(FleetUnavailable):
            await client.charge_start(VIN)
    assert api.count("command") == 0
