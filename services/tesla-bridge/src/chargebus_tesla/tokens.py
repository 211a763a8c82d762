"""OAuth tokens: the token file, and refreshing it exactly once however many calls need it.

Tesla refresh tokens are single-use. Two concurrent refreshes would burn the token twice and the second would
fail with `login_required`, locking the bridge out. Hence: one refresh at a time (a lock, and a caller whose
rejected token was already replaced gets the replacement instead of refreshing again), and the new token pair is
on disk before the new access token is handed to anyone.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from chargebus.clock import Clock
from chargebus.statefile import read_json, write_json

from chargebus_tesla.errors import AuthFailed, FleetUnavailable

log = logging.getLogger(__name__)

#: Refresh this long before expiry. Tesla access tokens live 8 h, so this lands at 87.5 % of the lifetime:
#: late enough not to waste refreshes, early enough that a slow or failing token endpoint has an hour of slack.
REFRESH_MARGIN_S = 3600.0
#: After a token endpoint failure (5xx, network) wait this long before asking again, as TeslaMate does.
REFRESH_RETRY_S = 300.0


@dataclass(frozen=True, repr=False)
class Tokens:
    access_token: str
    refresh_token: str
    expires_at: float

    def __repr__(self) -> str:
        # Secrets never reach a log line or a traceback through repr().
        return f"Tokens(expires_at={self.expires_at:.0f})"


class TokenStore:
    """The token file `{"access_token", "refresh_token", "expires_at"}`, seeded by the user."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Tokens:
        try:
            data = read_json(self.path)
        except FileNotFoundError:
            raise AuthFailed(f"token file {self.path} does not exist: seed it with your Tesla tokens") from None
        except (OSError, ValueError) as exc:
            raise AuthFailed(f"token file {self.path} is unreadable: {type(exc).__name__}") from None
        return _tokens_from(data, f"token file {self.path}")

    def save(self, tokens: Tokens) -> None:
        write_json(
            self.path,
            {
                "access_token": tokens.access_token,
                "refresh_token": tokens.refresh_token,
                "expires_at": tokens.expires_at,
            },
        )


def _tokens_from(data: object, where: str) -> Tokens:
    if not isinstance(data, dict):
        raise AuthFailed(f"{where}: expected a JSON object")
    access, refresh, expires = data.get("access_token"), data.get("refresh_token"), data.get("expires_at")
    if not isinstance(access, str) or not access or not isinstance(refresh, str) or not refresh:
        raise AuthFailed(f"{where}: access_token and refresh_token must be non-empty strings")
    if isinstance(expires, bool) or not isinstance(expires, int | float) or not math.isfinite(expires):
        raise AuthFailed(f"{where}: expires_at must be epoch seconds")
    return Tokens(access, refresh, float(expires))


#: Exchanges a refresh token for a new token pair (the HTTP call lives in the client).
Refresher = Callable[[str], Awaitable[Tokens]]


class TokenManager:
    """Hands out a valid access token; refreshes proactively, after a 401, and never twice at once."""

    def __init__(
        self, store: TokenStore, refresher: Refresher, clock: Clock, refresh_margin_s: float = REFRESH_MARGIN_S
    ) -> None:
        self._store = store
        self._refresher = refresher
        self._clock = clock
        self._margin = refresh_margin_s
        self._lock = asyncio.Lock()
        self._tokens: Tokens | None = None
        self._failure: str | None = None
        self._failed_refresh_token: str | None = None
        self._retry_refresh_at = 0.0

    @property
    def failure(self) -> str | None:
        """Why the tokens are unusable (the user must act), or None."""
        return self._failure

    async def access_token(self) -> str:
        tokens = self._current()
        now = self._clock.time()
        if now < tokens.expires_at - self._margin:
            return tokens.access_token
        if now < self._retry_refresh_at and now < tokens.expires_at:
            return tokens.access_token
        try:
            return await self._refresh(tokens.access_token)
        except FleetUnavailable:
            if now < tokens.expires_at:
                return tokens.access_token  # still valid: the next call tries the refresh again
            raise

    async def refresh_rejected(self, rejected_access_token: str) -> str:
        """A call got 401 with `rejected_access_token`: the replacement, refreshing only if nobody did yet."""
        return await self._refresh(rejected_access_token)

    def mark_failed(self, reason: str) -> None:
        """Stop using these tokens until the user seeds a new token file."""
        self._failure = reason
        self._failed_refresh_token = self._tokens.refresh_token if self._tokens else None
        log.error(f"tesla_auth_failed reason={reason!r} token_file={self._store.path}")

    def _current(self) -> Tokens:
        if self._failure is not None:
            self._reload_if_reseeded()
        if self._tokens is None:
            self._tokens = self._store.load()
        return self._tokens

    def _reload_if_reseeded(self) -> None:
        assert self._failure is not None
        try:
            tokens = self._store.load()
        except AuthFailed:
            raise AuthFailed(self._failure) from None
        if tokens.refresh_token == self._failed_refresh_token:
            raise AuthFailed(self._failure)
        log.info(f"tesla_auth_reseeded token_file={self._store.path}")
        self._tokens, self._failure, self._failed_refresh_token = tokens, None, None

    async def _refresh(self, stale_access_token: str) -> str:
        async with self._lock:
            tokens = self._current()
            if tokens.access_token != stale_access_token:
                return tokens.access_token  # another caller refreshed while we waited
            now = self._clock.time()
            if now < self._retry_refresh_at:
                raise FleetUnavailable("token refresh failed recently; retrying later")
            try:
                fresh = await self._refresher(tokens.refresh_token)
            except AuthFailed as exc:
                self.mark_failed(str(exc))
                raise
            except FleetUnavailable:
                self._retry_refresh_at = now + REFRESH_RETRY_S
                raise
            # On disk first: if we crashed after using the new access token but before saving, the old refresh
            # token in the file would already be spent.
            self._store.save(fresh)
            self._tokens = fresh
            log.info(f"tesla_token_refreshed expires_at={fresh.expires_at:.0f}")
            return fresh.access_token


def tokens_from_grant(grant: object, previous_refresh_token: str, now: float) -> Tokens:
    """The token endpoint's answer `{access_token, refresh_token, expires_in}` as Tokens."""
    if not isinstance(grant, dict):
        raise AuthFailed("token endpoint answered without a JSON object")
    expires_in = grant.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
        raise AuthFailed("token endpoint answered without a valid expires_in")
    refresh = grant.get("refresh_token") or previous_refresh_token
    return _tokens_from(
        {"access_token": grant.get("access_token"), "refresh_token": refresh, "expires_at": now + expires_in},
        "token endpoint answer",
    )
