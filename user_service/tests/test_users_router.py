"""Profiles and password change: the caller is whoever the gateway's X-User-Id names."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from shared.testing.mail import MailSink
from user_service.tests.helpers import PASSWORD, assert_problem, identity_headers, login, signed_in


async def _me(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get("/api/v1/users/me", headers=headers)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_me_needs_the_gateway_identity(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/api/v1/users/me"), 401, "missing_token")
    assert_problem(await client.get("/api/v1/users/me", headers={"X-User-Id": "abc"}),
                   401, "missing_token")


@pytest.mark.parametrize(
    "user_id", [b"abc", b"0", b"-1", b"1 ", b"+1", str(2**53).encode(), b"\xb2", b"9" * 5000]
)
async def test_a_malformed_user_id_header_is_401_not_500(
    client: httpx.AsyncClient, user_id: bytes
) -> None:
    # b"\xb2" is latin-1 "²": str.isdigit() says yes, int() says no.
    response = await client.get("/api/v1/users/me", headers=[(b"X-User-Id", user_id)])
    assert_problem(response, 401, "missing_token")


async def test_patch_changes_only_the_fields_sent_and_null_clears(
    client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    _, _, headers = await signed_in(client, mail_sink)
    before = await _me(client, headers)

    unchanged = await client.patch("/api/v1/users/me", headers=headers, json={})
    assert unchanged.status_code == 200
    assert unchanged.json() == before

    url = "https://cdn.example.com/u/1.png"
    set_both = await client.patch("/api/v1/users/me", headers=headers,
                                  json={"greeting": "hi", "profile_image_url": url})
    assert set_both.json() == {**before, "greeting": "hi", "profile_image_url": url}

    cleared = await client.patch("/api/v1/users/me", headers=headers,
                                 json={"profile_image_url": None})
    assert cleared.json() == {**before, "greeting": "hi", "profile_image_url": None}
    assert await _me(client, headers) == cleared.json()


@pytest.mark.parametrize(
    "body",
    [
        {"name": None},
        {"name": ""},
        {"name": "   "},
        {"name": "n" * 101},
        {"greeting": "g" * 501},
        {"profile_image_url": "javascript:alert(1)"},
        {"email": "new@example.com"},
        {"id": 1},
    ],
)
async def test_patch_rejects_bad_fields(
    client: httpx.AsyncClient, mail_sink: MailSink, body: dict[str, Any]
) -> None:
    _, _, headers = await signed_in(client, mail_sink)
    before = await _me(client, headers)
    assert_problem(await client.patch("/api/v1/users/me", headers=headers, json=body),
                   422, "validation_error")
    assert await _me(client, headers) == before


async def test_patch_only_ever_touches_the_header_user(
    client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    _, _, mine = await signed_in(client, mail_sink)
    _, _, theirs = await signed_in(client, mail_sink)
    their_profile = await _me(client, theirs)

    response = await client.patch("/api/v1/users/me", headers=mine, json={"name": "Changed"})
    assert response.json()["id"] == int(mine["X-User-Id"])
    assert await _me(client, theirs) == their_profile
    # Naming the other user in the body is not a way around it.
    assert_problem(
        await client.patch("/api/v1/users/me", headers=mine,
                           json={"id": their_profile["id"], "name": "Hijacked"}),
        422, "validation_error",
    )
    assert await _me(client, theirs) == their_profile


async def test_public_profile_shows_no_private_fields(
    client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    _, _, headers = await signed_in(client, mail_sink)
    response = await client.get(f"/api/v1/users/{headers['X-User-Id']}")
    assert response.status_code == 200
    assert response.json() == {"id": int(headers["X-User-Id"]), "name": "Min-ji",
                               "greeting": None, "profile_image_url": None}


async def test_unknown_user_is_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(f"/api/v1/users/{2**53 - 1}"), 404, "not_found")


@pytest.mark.parametrize("user_id", ["0", "-1", str(2**53), "abc", "1.5"])
async def test_user_id_out_of_range_is_422(client: httpx.AsyncClient, user_id: str) -> None:
    assert_problem(await client.get(f"/api/v1/users/{user_id}"), 422, "validation_error")


async def test_wrong_current_password_is_403_invalid_credentials(
    client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    email, _, headers = await signed_in(client, mail_sink)
    response = await client.put("/api/v1/users/me/password", headers=headers,
                                json={"current_password": "not it",
                                      "new_password": "something new"})
    assert_problem(response, 403, "invalid_credentials")
    assert (await login(client, email)).status_code == 200


async def test_new_password_must_be_8_to_128_characters(
    client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    _, _, headers = await signed_in(client, mail_sink)
    for new_password in ("short", "x" * 129):
        response = await client.put("/api/v1/users/me/password", headers=headers,
                                    json={"current_password": PASSWORD,
                                          "new_password": new_password})
        assert_problem(response, 422, "validation_error")


async def test_guessing_the_current_password_is_throttled_like_login(
    client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    # A stolen token must not become an unthrottled password oracle (and then a takeover).
    email, _, headers = await signed_in(client, mail_sink)
    guesses = await asyncio.gather(*(
        client.put("/api/v1/users/me/password", headers=headers,
                   json={"current_password": f"guess {n}", "new_password": "taken over"})
        for n in range(15)
    ))
    statuses = sorted(r.status_code for r in guesses)
    assert statuses == [403] * 10 + [429] * 5, statuses
    refused = await client.put("/api/v1/users/me/password", headers=headers,
                               json={"current_password": PASSWORD, "new_password": "taken over"})
    assert_problem(refused, 429, "too_many_attempts")
    assert 0 < int(refused.headers["Retry-After"]) <= 900
    assert_problem(await login(client, email, "taken over"), 429, "too_many_attempts")


async def test_two_changes_with_the_same_old_password_cannot_both_win(
    client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    # The owner changes a leaked password while the attacker, signed in elsewhere, races to
    # change it too: once one change is in, the old password is no longer the current one.
    email, _, owner = await signed_in(client, mail_sink)
    attacker = identity_headers((await login(client, email)).json()["access_token"])
    responses = await asyncio.gather(*(
        client.put("/api/v1/users/me/password", headers=headers,
                   json={"current_password": PASSWORD, "new_password": new_password})
        for headers, new_password in ((owner, "owner's new one"), (attacker, "attacker's one"))
    ))
    assert sorted(r.status_code for r in responses) == [204, 403]
