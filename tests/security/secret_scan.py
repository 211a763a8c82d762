"""Finding secrets in captured bytes, in the forms a leak takes, and a broker with a password of our choosing.

A secret leaks rarely as itself: an HTTP form body carries it URL-encoded, a JSON dump escapes it, an
`Authorization: Basic` header or a debug dump of bytes base64-encodes it. `encoded_forms` lists the forms to look for;
for base64 it takes the part of the encoding that does not depend on the bytes around the secret, for each of the
three alignments.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

from chargebus.broker import BrokerProcess, free_port, mosquitto_binary, mosquitto_broker

from tests.support.tls import write_test_pki


def _base64_cores(secret: bytes) -> list[bytes]:
    """The characters of base64(… + secret + …) fixed by the secret alone, for the 3 possible alignments."""
    cores = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + secret)
        start = (4 * offset + 2) // 3
        end = 4 * ((offset + len(secret)) // 3)
        core = encoded[start:end]
        cores += [core, core.replace(b"+", b"-").replace(b"/", b"_")]
    return [core for core in cores if len(core) >= 8]


def encoded_forms(secret: str) -> dict[str, bytes]:
    raw = secret.encode()
    forms = {
        "raw": raw,
        "url-encoded": quote(secret, safe="").encode(),
        "form-encoded": quote_plus(secret).encode(),
        "json-escaped": json.dumps(secret)[1:-1].encode(),
        "hex": raw.hex().encode(),
        "HEX": raw.hex().upper().encode(),
        "python-repr": repr(raw)[2:-1].encode(),
    }
    for index, core in enumerate(_base64_cores(raw)):
        forms[f"base64#{index}"] = core
    return forms


def find_leaks(secrets: dict[str, str], captured: dict[str, bytes]) -> list[str]:
    """Every (secret, form, place) found, e.g. "mqtt password (url-encoded) in history.log at byte 1234"."""
    found = []
    for secret_name, secret in secrets.items():
        for form_name, form in encoded_forms(secret).items():
            for place, data in captured.items():
                at = data.find(form)
                if at >= 0:
                    context = data[max(0, at - 60) : at + len(form) + 20].decode("utf-8", "replace")
                    found.append(f"{secret_name} ({form_name}) in {place} at byte {at}: …{context}…")
    return found


@dataclass
class PasswordBroker:
    """mosquitto with an anonymous listener (for the test's own eyes) and a TLS listener that needs a password."""

    process: BrokerProcess
    tls_port: int
    ca_file: Path
    username: str

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def tls_url(self) -> str:
        return f"mqtts://127.0.0.1:{self.tls_port}"

    def stop(self) -> None:
        self.process.stop()


def available() -> bool:
    return mosquitto_binary() is not None and shutil.which("mosquitto_passwd") is not None


def password_broker(workdir: Path, username: str, password: str) -> PasswordBroker:
    ca_file, cert_file, key_file = write_test_pki(workdir)
    password_file = workdir / "passwords"
    password_file.write_text("", encoding="utf-8")
    subprocess.run(["mosquitto_passwd", "-b", str(password_file), username, password], check=True)
    password_file.chmod(0o600)
    tls_port = free_port()
    extra = (
        f"listener {tls_port} 127.0.0.1\nallow_anonymous false\npassword_file {password_file}\n"
        f"cafile {ca_file}\ncertfile {cert_file}\nkeyfile {key_file}\n"
    )
    process = mosquitto_broker(workdir, extra_config=extra, extra_ports={"tls": tls_port}).start()
    return PasswordBroker(process, tls_port, ca_file, username)
