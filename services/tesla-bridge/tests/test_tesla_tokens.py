"""The token file and grant parsing, without HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chargebus_tesla.errors import AuthFailed
from chargebus_tesla.tokens import Tokens, TokenStore, tokens_from_grant


def test_grant_becomes_tokens_with_an_absolute_expiry() -> None:
    grant = {"access_token": "a1", "refresh_token": "r1", "expires_in": 28800}
    assert tokens_from_grant(grant, "r0", now=1000.0) == Tokens("a1", "r1", 29800.0)


def test_a_grant_without_a_new_refresh_token_keeps_the_old_one() -> None:
    assert tokens_from_grant({"access_token": "a1", "expires_in": 60}, "r0", 0.0).refresh_token == "r0"


@pytest.mark.parametrize(
    "grant", [None, {"access_token": "a1"}, {"access_token": "", "expires_in": 5}, {"expires_in": True}]
)
def test_bad_grants_are_auth_failures(grant: object) -> None:
    with pytest.raises(AuthFailed):
        tokens_from_grant(grant, "r0", 0.0)


def test_repr_hides_the_secrets() -> None:
    assert "secret" not in repr(Tokens("secret-a", "secret-r", 1.0))


@pytest.mark.parametrize(
    "content",
    ["{", json.dumps({"access_token": "a"}), json.dumps({"access_token": "a", "refresh_token": "r"}), "[]"],
)
def test_a_bad_token_file_is_a_clear_auth_failure(tmp_path: Path, content: str) -> None:
    path = tmp_path / "token.json"
    path.write_text(content)
    with pytest.raises(AuthFailed, match=str(path)):
        TokenStore(path).load()


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "sub" / "token.json")
    store.save(Tokens("a", "r", 5.0))
    assert store.load() == Tokens("a", "r", 5.0)
