"""The profile routes over HTTP: the caller is whoever the gateway's X-User-Id names. The rows
come from the factories: these rules do not depend on how an account was made."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts import internal_user_path
from shared.testing.identity import (
    SIGN_AT_SEND,
    service_identity_headers,
    signed_identity_headers,
    signer,
)
from shared.testing.problems import assert_problem
from user_service.tests.factories import identity_headers_of, make_login_session, make_user


async def signed_in_headers(session: AsyncSession, **user_fields: Any) -> dict[str, str]:
    user = await make_user(session, **user_fields)
    headers = identity_headers_of(await make_login_session(session, user=user))
    await session.commit()
    return headers


async def _me(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get("/api/v1/users/me", headers=headers)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_me_is_the_header_users_profile(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session, name="Ha-eun", greeting="hi")
    headers = identity_headers_of(await make_login_session(session, user=user))
    await session.commit()
    body = await _me(client, headers)
    assert body == {"id": user.id, "email": user.email, "name": "Ha-eun", "greeting": "hi",
                    "profile_image_url": None, "email_verified": True,
                    "created_at": body["created_at"], "roles": []}
    assert body["created_at"].endswith("Z")


async def test_me_needs_the_gateway_identity(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    assert_problem(await client.get("/api/v1/users/me"), 401, "missing_token")
    # A real user's id, but not signed by the gateway: anyone could have sent it.
    headers = await signed_in_headers(session)
    unsigned = {"X-User-Id": headers["X-User-Id"], "X-Session-Id": headers["X-Session-Id"]}
    assert_problem(await client.get("/api/v1/users/me", headers=unsigned), 401, "missing_token")


@pytest.mark.parametrize(
    "user_id", [b"abc", b"0", b"-1", b"1 ", b"+1", str(2**53).encode(), b"\xb2", b"9" * 5000]
)
async def test_a_malformed_user_id_header_is_401_not_500(
    client: httpx.AsyncClient, user_id: bytes
) -> None:
    # b"\xb2" is latin-1 "²": str.isdigit() says yes, int() says no. Signed, so that it is
    # the parsing that refuses it, not the signature check.
    headers = signed_identity_headers(None, None)
    signature = signer("gateway").sign(
        audience="user_service", method="GET", target="/api/v1/users/me", body=b"",
        user_id=user_id.decode("latin-1"), request_id=headers["X-Request-Id"],
        client_ip=headers["X-Forwarded-For"])
    raw = [(name.encode(), value.encode()) for name, value in headers.items()
           if name not in ("X-Identity-Signature", SIGN_AT_SEND)]
    raw += [(b"X-User-Id", user_id), (b"X-Identity-Signature", signature.encode())]
    response = await client.get("/api/v1/users/me", headers=raw)
    assert_problem(response, 401, "missing_token")


async def test_patch_changes_only_the_fields_sent_and_null_clears(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    headers = await signed_in_headers(session)
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
        # Spaces and control characters: a URL that reads one way and goes another.
        {"profile_image_url": "https://cdn.example.com/a b.png"},
        {"profile_image_url": "https://cdn.example.com/a.png\n"},
        {"profile_image_url": "https://cdn.example.com/\x00.png"},
        {"profile_image_url": "https://cdn.example.com/\u202egnp.exe"},
        {"profile_image_url": "https://cdn.example.com/\u00a0.png"},
        {"profile_image_url": "https://cdn.example.com/" + "%C3%A9" * 400},  # 2,400 characters
        # Not a URI (RFC 3986 is ASCII): an IDN host would be stored as another string
        # (https://xn--gda/), and look-alike letters are how a link poses as another site.
        {"profile_image_url": "https://\u00cf"},
        {"profile_image_url": "https://cdn.example.com/caf\u00e9.png"},
        {"email": "new@example.com"},
        {"id": 1},
    ],
)
async def test_patch_rejects_bad_fields(
    client: httpx.AsyncClient, session: AsyncSession, body: dict[str, Any]
) -> None:
    headers = await signed_in_headers(session)
    before = await _me(client, headers)
    assert_problem(await client.patch("/api/v1/users/me", headers=headers, json=body),
                   422, "validation_error")
    assert await _me(client, headers) == before


@pytest.mark.parametrize(("sent", "stored"), [
    ("HTTPS://CDN.Example.COM/u/1.png", "https://cdn.example.com/u/1.png"),
    ("https://cdn.example.com", "https://cdn.example.com/"),
    ("https://cdn.example.com:443/caf%C3%A9.png", "https://cdn.example.com/caf%C3%A9.png"),
])
async def test_profile_image_url_is_stored_in_its_normal_form(
    client: httpx.AsyncClient, session: AsyncSession, sent: str, stored: str
) -> None:
    # One spelling per URL: what clients get back is what any URL parser makes of it.
    headers = await signed_in_headers(session)
    response = await client.patch("/api/v1/users/me", headers=headers,
                                  json={"profile_image_url": sent})
    assert response.json()["profile_image_url"] == stored
    assert (await _me(client, headers))["profile_image_url"] == stored


async def test_patch_only_ever_touches_the_header_user(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    mine = await signed_in_headers(session)
    theirs = await signed_in_headers(session)
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
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session, name="Min-ji", verified=False)
    await session.commit()
    response = await client.get(f"/api/v1/users/{user.id}")
    assert response.status_code == 200
    assert response.json() == {"id": user.id, "name": "Min-ji", "greeting": None,
                               "profile_image_url": None}


async def test_unknown_user_is_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(f"/api/v1/users/{2**53 - 1}"), 404, "not_found")


@pytest.mark.parametrize("user_id", ["0", "-1", str(2**53), "abc", "1.5"])
async def test_user_id_out_of_range_is_422(client: httpx.AsyncClient, user_id: str) -> None:
    assert_problem(await client.get(f"/api/v1/users/{user_id}"), 422, "validation_error")


async def test_internal_user_route_answers_whether_a_user_exists(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session, verified=False)
    await session.commit()
    service = service_identity_headers("social_service")  # the service that asks it
    found = await client.get(internal_user_path(user.id), headers=service)
    assert found.status_code == 200
    assert found.json() == {"id": user.id}
    assert_problem(await client.get(internal_user_path(2**53 - 1), headers=service), 404,
                   "not_found")
    assert_problem(await client.get("/internal/users/0", headers=service), 422,
                   "validation_error")


async def test_internal_routes_answer_only_callers_holding_the_key(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    await session.commit()
    # Any process that reaches the port, without going through a service of the deployment.
    assert_problem(await client.get(internal_user_path(user.id)), 401, "missing_token")
    forged = signed_identity_headers(None, None, key="not-the-deployment-key-" + "x" * 16)
    assert_problem(await client.get(internal_user_path(user.id), headers=forged), 401,
                   "missing_token")
    # The attack: a signature the gateway made for a user's public request (captured on the
    # wire), sent to an internal route within its age.
    for gateway_made in (signed_identity_headers(user.id, "a" * 32),
                         signed_identity_headers(None, None, client_ip="203.0.113.9")):
        assert_problem(await client.get(internal_user_path(user.id), headers=gateway_made),
                       401, "missing_token")
    # A service the route does not name (only social_service asks whether a user exists).
    assert_problem(await client.get(internal_user_path(user.id),
                                    headers=service_identity_headers("order_service")),
                   401, "missing_token")


async def test_internal_user_route_is_not_in_the_public_document(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert not [path for path in document["paths"] if path.startswith("/internal")]
