"""Who may connect: the charger's id from the URL, its Basic-auth password, the OCPP version it offers. Pure.

A charger connects to `ws[s]://<listen>/<ocpp_id>` (anything before the last path segment is ignored, so
`/ocpp/WB-0042` works too). Its id must be configured (matched exactly) unless `allow_unknown`; when its entry has a
password, HTTP Basic auth with user = ocpp_id and that password is required (OCPP security profiles 1 and 2). The
bridge speaks `ocpp2.0.1` and `ocpp1.6`, preferring 2.0.1 when both are offered.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import unquote, urlsplit

SUBPROTOCOLS = ("ocpp2.0.1", "ocpp1.6")


@dataclass(frozen=True, slots=True)
class Refusal:
    status: HTTPStatus
    reason: str


def ocpp_id_of(path: str) -> str | None:
    """The last segment of the request path, URL-decoded; None when there is none."""
    segment = urlsplit(path).path.rstrip("/").rpartition("/")[2]
    ocpp_id = unquote(segment)
    if not ocpp_id or len(ocpp_id) > 48 or any(ord(c) < 0x21 or ord(c) > 0x7E for c in ocpp_id):
        return None
    return ocpp_id


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic …` header, None when absent or malformed."""
    if header is None:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def choose_subprotocol(offered: list[str]) -> str | None:
    for name in SUBPROTOCOLS:
        if name in offered:
            return name
    return None


def admit(
    ocpp_id: str | None,
    authorization: str | None,
    offered: list[str],
    *,
    configured: bool,
    password: str | None,
    allow_unknown: bool,
) -> Refusal | None:
    """None when the charger may connect, else why not (with the HTTP status of the refusal)."""
    if ocpp_id is None:
        return Refusal(HTTPStatus.NOT_FOUND, "no charge point id in the URL (ws://host:port/<ocpp_id>)")
    if not configured and not allow_unknown:
        return Refusal(HTTPStatus.NOT_FOUND, f"unknown charge point id {ocpp_id!r}: not configured")
    if password is not None:
        credentials = basic_credentials(authorization)
        if credentials is None:
            return Refusal(HTTPStatus.UNAUTHORIZED, f"{ocpp_id}: no Basic-auth credentials")
        user, given = credentials
        user_ok = hmac.compare_digest(user.encode(), ocpp_id.encode())
        password_ok = hmac.compare_digest(given.encode(), password.encode())
        if not (user_ok and password_ok):
            return Refusal(HTTPStatus.UNAUTHORIZED, f"{ocpp_id}: wrong Basic-auth user or password")
    if offered and choose_subprotocol(offered) is None:
        return Refusal(
            HTTPStatus.BAD_REQUEST,
            f"{ocpp_id}: offers {', '.join(offered)[:60]}; this CSMS speaks {', '.join(SUBPROTOCOLS)}",
        )
    return None


@dataclass(slots=True)
class ReportBudget:
    """At most `per_window` error reports per source and window, so a charger spewing bad frames cannot flood the
    error topic. `allow` says whether to report now; the first one over budget in a window is a "suppressed" note.
    Sources are forgotten oldest-first beyond `max_sources`."""

    per_window: int = 10
    window_s: float = 60.0
    max_sources: int = 512
    _spent: dict[str, tuple[float, int]] = field(default_factory=dict)

    def allow(self, source: str, now: float) -> bool | None:
        """True: report; None: report that further ones are suppressed; False: drop (logged only)."""
        started, count = self._spent.pop(source, (now, 0))
        if now - started >= self.window_s:
            started, count = now, 0
        count += 1
        self._spent[source] = (started, count)
        while len(self._spent) > self.max_sources:
            del self._spent[next(iter(self._spent))]
        if count <= self.per_window:
            return True
        return None if count == self.per_window + 1 else False
