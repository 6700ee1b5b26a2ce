"""The auth routes over HTTP: sign-up, email verification, resend, login throttling, refresh
rotation, logout and the password change."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from shared.clock import utcnow
from shared.contracts import revoked_session_key
from shared.testing.apps import RunningApp
from shared.testing.identity import signed_identity_headers
from shared.testing.mail import MailSink
from shared.testing.net import free_port
from shared.testing.problems import assert_problem
from user_service.auth.limits import MAIL_DELAYED_KEY, MAIL_SENT_KEY, signup_mails_key
from user_service.auth.models import RefreshToken
from user_service.auth.service import hash_refresh_token
from user_service.auth.throttle import pair_attempts_key
from user_service.tests.conftest import SettingsFactory
from user_service.tests.factories import (
    PASSWORD,
    make_login_session,
    make_refresh_token,
    make_user,
    unique_email,
)
from user_service.tests.helpers import (
    after_commit_done,
    identity_headers,
    login,
    resend,
    running_app,
    signed_in,
    signup,
    unique_ip,
    verified_account,
    verify,
)


def _without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "request_id"}


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


# Sign-up


async def test_signup_with_a_verified_accounts_email_is_409_whatever_its_case(
    client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    email = await verified_account(client, mail_sink)
    assert_problem(await signup(client, email.upper()), 409, "email_taken")


async def test_concurrent_signups_for_one_email_leave_one_account(
    client: httpx.AsyncClient, db_engine: AsyncEngine
) -> None:
    email = unique_email()
    responses = await asyncio.gather(*(signup(client, email) for _ in range(3)))
    for response in responses:
        if response.status_code != 201:
            assert_problem(response, 409, "email_taken")
    assert 201 in [r.status_code for r in responses]
    async with db_engine.connect() as conn:
        count = (await conn.execute(text("SELECT COUNT(*) FROM users WHERE email = :email"),
                                    {"email": email})).scalar_one()
    assert count == 1


async def test_a_sign_up_for_an_unverified_address_replaces_that_account(
    client: httpx.AsyncClient, mail_sink: MailSink, redis: Redis
) -> None:
    """The pre-hijack: a squatter signs up the owner's address first with a password of
    theirs. The owner signs up too and verifies; the squatter's password opens nothing."""
    email = unique_email()
    first = await signup(client, email, password="squatter's password", name="Squatter")
    first_code = (await mail_sink.wait_for(email)).code
    owners_address = unique_ip()
    second = await signup(client, email, name="Owner", ip=owners_address)
    assert second.status_code == 201
    assert second.json()["id"] != first.json()["id"]
    assert second.json()["name"] == "Owner"
    token = second.headers["Signup-Token"]
    code = (await mail_sink.wait_for(email, count=2)).code
    if first_code != code:  # one chance in a million they coincide
        assert_problem(await verify(client, email, first_code, token=token), 422,
                       "invalid_code")
    # Two parties claimed the address while a code was live: the code alone is not enough
    # from elsewhere than the sign-up's network; its token is, or that network.
    assert_problem(await verify(client, email, code), 422, "invalid_code")
    assert_problem(await verify(client, email, code, token=first.headers["Signup-Token"]), 422,
                   "invalid_code")
    assert (await verify(client, email, code, token=token)).status_code == 200
    assert_problem(await login(client, email, "squatter's password"), 401, "invalid_credentials")
    assert (await login(client, email)).status_code == 200
    # Verified now: the address is taken.
    assert_problem(await signup(client, email), 409, "email_taken")


async def test_a_later_sign_up_cannot_hijack_a_pending_account(
    client: httpx.AsyncClient, mail_sink: MailSink, redis: Redis
) -> None:
    """The attack of issue 19: the victim signs up; the attacker signs the pending address up
    again with a password of theirs; the victim types the newest code. It must not verify the
    attacker's account."""
    email, victims_address = unique_email(), unique_ip()
    victim = (await signup(client, email, name="Victim", ip=victims_address)).headers
    victims_code = (await mail_sink.wait_for(email)).code
    attacker = await signup(client, email, password="attacker's password", name="Attacker")
    assert attacker.status_code == 201
    newest = (await mail_sink.wait_for(email, count=2)).code
    for code in {victims_code, newest}:
        assert_problem(await verify(client, email, code, token=victim["Signup-Token"],
                                    ip=victims_address), 422, "invalid_code")
        assert_problem(await verify(client, email, code, ip=victims_address), 422,
                       "invalid_code")
    assert_problem(await login(client, email, "attacker's password"), 403, "email_not_verified")
    # The attacker's own sign-up is the one that may verify: from where it was made.
    assert (await verify(client, email, newest, ip=victims_address,
                         token=attacker.headers["Signup-Token"])).status_code == 200


async def test_repeated_sign_ups_do_not_bomb_a_mailbox(
    service: RunningApp, client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    """Mail bombing: signing an address up again and again is no way around the resend limit
    (two sign-up mails per code lifetime: the owner after a squatter)."""
    email = unique_email()
    for _ in range(5):
        assert (await signup(client, email)).status_code == 201
    await mail_sink.wait_for(email, count=2)
    await after_commit_done(service)
    assert len(mail_sink.mails_to(email)) == 2


async def test_an_uncontested_sign_up_verifies_with_or_without_its_token(
    client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    email, other = unique_email(), unique_email()
    token = (await signup(client, email)).headers["Signup-Token"]
    other_token = (await signup(client, other)).headers["Signup-Token"]
    code = (await mail_sink.wait_for(email)).code
    # Another sign-up's token is a wrong one.
    assert_problem(await verify(client, email, code, token=other_token), 422, "invalid_code")
    assert (await verify(client, email, code, token=token)).status_code == 200
    other_code = (await mail_sink.wait_for(other)).code
    assert (await verify(client, other, other_code)).status_code == 200


async def test_verify_answers_alike_for_unknown_verified_and_pending_addresses(
    client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    """Item 8: after the cap of wrong codes, a pending account answered 429 and the others
    422, which told which addresses have accounts."""
    pending = unique_email()
    await signup(client, pending)
    code = (await mail_sink.wait_for(pending)).code
    verified = await verified_account(client, mail_sink)
    answers = []
    for email in (unique_email(), verified, pending):
        for _ in range(5):
            assert_problem(await verify(client, email, _wrong(code)), 422, "invalid_code")
        for attempt in (_wrong(code), code):
            refused = await verify(client, email, attempt)
            body = assert_problem(refused, 429, "too_many_attempts")
            answers.append((body["detail"], refused.headers["Retry-After"]))
    assert len(set(answers)) == 1, answers


@pytest.mark.parametrize(
    "overrides",
    [
        {"password": "7chars!"},
        {"password": "x" * 129},
        {"email": "not-an-email"},
        {"name": ""},
        {"name": "n" * 101},
        {"greeting": "g" * 501},
        {"profile_image_url": "ftp://example.com/me.png"},
        {"profile_image_url": "https://example.com/" + "a" * 2048},
        {"is_admin": True},
    ],
)
async def test_signup_rejects_bad_bodies_with_validation_problems(
    client: httpx.AsyncClient, overrides: dict[str, Any]
) -> None:
    body = {"email": unique_email(), "password": PASSWORD, "name": "Min-ji", **overrides}
    problem = assert_problem(
        await client.post("/api/v1/auth/signup", json=body), 422, "validation_error"
    )
    assert problem["errors"]


async def test_malformed_json_is_a_validation_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/signup", content=b'{"email": ', headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 422, "validation_error")


async def test_signup_accepts_password_of_exactly_8_and_128_characters(
    client: httpx.AsyncClient,
) -> None:
    assert (await signup(client, unique_email(), password="8 chars!")).status_code == 201
    assert (await signup(client, unique_email(), password="p" * 128)).status_code == 201


async def test_failed_mail_keeps_the_account_and_resend_delivers_a_code(
    make_settings: SettingsFactory, client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    email = unique_email()
    # Nothing listens on a freshly freed port: the SMTP connection is refused.
    async with running_app(make_settings(smtp_port=free_port())) as broken_mail:
        response = await signup(broken_mail.client, email)
        assert response.status_code == 201
        await after_commit_done(broken_mail)
    assert mail_sink.mails_to(email) == []

    assert (await resend(client, email)).status_code == 202
    code = (await mail_sink.wait_for(email)).code
    assert (await verify(client, email, code)).status_code == 200


# Rate limits


async def test_sign_ups_are_limited_per_client_address(client: httpx.AsyncClient) -> None:
    ip = unique_ip()
    for _ in range(10):
        assert (await signup(client, unique_email(), ip=ip)).status_code == 201
    refused = await signup(client, unique_email(), ip=ip)
    assert_problem(refused, 429, "rate_limited")
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    assert (await signup(client, unique_email(), ip=unique_ip())).status_code == 201


async def test_resends_and_verifications_are_limited_per_client_address(
    client: httpx.AsyncClient,
) -> None:
    # Counted whatever the address asked about, so the limit reveals no account either.
    ip = unique_ip()
    for _ in range(10):
        assert (await resend(client, unique_email(), ip=ip)).status_code == 202
    refused = await resend(client, unique_email(), ip=ip)
    assert_problem(refused, 429, "rate_limited")
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    for _ in range(30):
        assert_problem(await verify(client, unique_email(), "123456", ip=ip), 422, "invalid_code")
    refused = await verify(client, unique_email(), "123456", ip=ip)
    assert_problem(refused, 429, "rate_limited")
    assert 0 < int(refused.headers["Retry-After"]) <= 900
    assert (await resend(client, unique_email(), ip=unique_ip())).status_code == 202


async def test_no_shared_cap_lets_a_few_networks_deny_every_sign_up(
    make_settings: SettingsFactory, mail_sink: MailSink, redis: Redis
) -> None:
    """The attack: a few hundred addresses spend a cap for everyone together and every sign-up
    is refused for the hour. Now nothing is refused for that; past the hour's mails a code
    waits for its slot, and is mailed (fresh) once there is one."""
    await redis.delete(MAIL_SENT_KEY, MAIL_DELAYED_KEY)
    try:
        async with running_app(make_settings(mail_max_per_hour=2,
                                             mail_delayed_interval_seconds=0.2)) as app:
            emails = [unique_email() for _ in range(5)]
            for email in emails:
                assert (await signup(app.client, email)).status_code == 201
            assert (await resend(app.client, emails[-1])).status_code == 202
            await after_commit_done(app)
            assert sum(len(mail_sink.mails_to(email)) for email in emails) == 2
            assert await redis.zcard(MAIL_DELAYED_KEY) == 3
            # A new hour: two of the delayed codes go out, first come first served; the last
            # waits for the next hour.
            await redis.delete(MAIL_SENT_KEY)
            await mail_sink.wait_for(emails[3])
            await asyncio.sleep(0.5)
            assert [len(mail_sink.mails_to(email)) for email in emails] == [1, 1, 1, 1, 0]
            await redis.delete(MAIL_SENT_KEY)
            for email in emails:
                code = (await mail_sink.wait_for(email)).code
                assert (await verify(app.client, email, code)).status_code == 200
            assert all(len(mail_sink.mails_to(email)) == 1 for email in emails)
    finally:
        await redis.delete(MAIL_SENT_KEY, MAIL_DELAYED_KEY)


async def test_ipv6_sign_ups_count_by_their_56(client: httpx.AsyncClient) -> None:
    """One subscriber's /56 is one client: 256 /64s are not 256 times the limit."""
    for subnet in range(10):
        ip = f"2001:db8:77:{subnet:x}::1"
        assert (await signup(client, unique_email(), ip=ip)).status_code == 201
    assert_problem(await signup(client, unique_email(), ip="2001:db8:77:ff::5"),
                   429, "rate_limited")
    assert (await signup(client, unique_email(), ip="2001:db8:77:100::1")).status_code == 201


# Email verification


async def test_wrong_code_unknown_and_verified_addresses_answer_alike(
    client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    # Nothing in the answer tells whether an address has an account, verified or not.
    email = unique_email()
    await signup(client, email)
    code = (await mail_sink.wait_for(email)).code
    verified = await verified_account(client, mail_sink)
    answers = [assert_problem(await verify(client, address, attempt), 422, "invalid_code")
               for address, attempt in ((email, _wrong(code)), (unique_email(), code),
                                        (verified, code))]
    assert len({str(_without_request_id(answer)) for answer in answers}) == 1
    assert (await verify(client, email, code)).status_code == 200


async def test_five_wrong_codes_void_the_code_until_a_resend(
    client: httpx.AsyncClient, mail_sink: MailSink, redis: Redis
) -> None:
    email = unique_email()
    await signup(client, email)
    code = (await mail_sink.wait_for(email)).code
    for _ in range(5):
        assert_problem(await verify(client, email, _wrong(code)), 422, "invalid_code")

    # Even the right code is refused now: the failures were committed despite the 422s.
    voided = await verify(client, email, code)
    assert_problem(voided, 429, "too_many_attempts")
    assert int(voided.headers["Retry-After"]) >= 1

    await redis.delete(f"mail:resend:{email}")  # the minute between mails has passed
    assert (await resend(client, email)).status_code == 202
    new_code = (await mail_sink.wait_for(email, count=2)).code
    assert (await verify(client, email, new_code)).status_code == 200


async def test_expired_code_is_code_expired(
    client: httpx.AsyncClient, mail_sink: MailSink, db_engine: AsyncEngine
) -> None:
    email = unique_email()
    user_id = (await signup(client, email)).json()["id"]
    code = (await mail_sink.wait_for(email)).code
    async with db_engine.begin() as conn:
        await conn.execute(
            text("UPDATE email_verifications SET expires_at = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND "
                 "WHERE user_id = :id"),
            {"id": user_id},
        )
    assert_problem(await verify(client, email, code), 422, "code_expired")


async def test_double_submitted_right_code_verifies_once(
    client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    email = unique_email()
    await signup(client, email)
    code = (await mail_sink.wait_for(email)).code
    responses = await asyncio.gather(*(verify(client, email, code) for _ in range(2)))
    # The second finds the address verified, and answers as for any verified address.
    assert sorted(r.status_code for r in responses) == [200, 422]
    assert (await login(client, email)).status_code == 200


async def test_at_most_20_wrong_codes_a_day_whatever_the_resends_and_sign_ups(
    client: httpx.AsyncClient, mail_sink: MailSink, redis: Redis
) -> None:
    email = unique_email()
    await signup(client, email)
    for round_ in range(4):
        code = (await mail_sink.wait_for(email, count=round_ + 1)).code
        for _ in range(5):
            assert_problem(await verify(client, email, _wrong(code)), 422, "invalid_code")
        # The minute between mails has passed, and the code's lifetime of sign-up mails.
        await redis.delete(f"mail:resend:{email}", signup_mails_key(email))
        if round_ < 3:
            # A fresh code each round: by resend, and once by signing up again.
            fresh = resend(client, email) if round_ % 2 == 0 else signup(client, email)
            assert (await fresh).status_code in (201, 202)
    await signup(client, email)
    code = (await mail_sink.wait_for(email, count=5)).code
    refused = await verify(client, email, code)  # the right code, of a fresh account
    assert_problem(refused, 429, "too_many_attempts")
    assert 3600 < int(refused.headers["Retry-After"]) <= 24 * 3600


@pytest.mark.parametrize("code", ["12345", "1234567", "12345a", "١٢٣٤٥٦", 123456])
async def test_code_must_be_six_ascii_digits(client: httpx.AsyncClient, code: object) -> None:
    response = await client.post("/api/v1/auth/verify-email",
                                 json={"email": unique_email(), "code": code})
    assert_problem(response, 422, "validation_error")


# Resend


async def test_resend_is_202_for_unknown_and_verified_addresses_and_sends_nothing(
    service: RunningApp, client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    unknown = unique_email()
    verified = await verified_account(client, mail_sink)
    for email in (unknown, verified):
        response = await resend(client, email)
        assert response.status_code == 202
        assert response.content == b""
    await after_commit_done(service)
    assert mail_sink.mails_to(unknown) == []
    assert len(mail_sink.mails_to(verified)) == 1


async def test_resend_sends_at_most_one_mail_per_interval_and_replaces_the_code(
    make_settings: SettingsFactory, mail_sink: MailSink
) -> None:
    email = unique_email()
    async with running_app(make_settings(resend_interval_seconds=1)) as app:
        client = app.client
        await signup(client, email)
        first_code = (await mail_sink.wait_for(email)).code

        assert (await resend(client, email)).status_code == 202
        await after_commit_done(app)
        assert len(mail_sink.mails_to(email)) == 1

        await asyncio.sleep(1.1)
        assert (await resend(client, email)).status_code == 202
        second_code = (await mail_sink.wait_for(email, count=2)).code
        await after_commit_done(app)
        assert len(mail_sink.mails_to(email)) == 2

        if second_code != first_code:  # one chance in a million they coincide
            assert_problem(await verify(client, email, first_code), 422, "invalid_code")
        assert (await verify(client, email, second_code)).status_code == 200


async def test_a_resend_right_after_signup_sends_no_second_mail(
    service: RunningApp, client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    # The sign-up mail may still be on its way (a slow relay) when the client asks again.
    email = unique_email()
    await signup(client, email)
    assert (await resend(client, email)).status_code == 202
    await after_commit_done(service)
    assert len(mail_sink.mails_to(email)) == 1


# Login


async def test_unknown_email_and_wrong_password_get_the_same_answer(
    client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    email = await verified_account(client, mail_sink)
    ip = unique_ip()
    wrong_password = assert_problem(await login(client, email, "not the password", ip=ip),
                                    401, "invalid_credentials")
    unknown = assert_problem(await login(client, unique_email(), PASSWORD, ip=ip),
                             401, "invalid_credentials")
    assert _without_request_id(wrong_password) == _without_request_id(unknown)


async def test_unverified_account_with_right_password_is_email_not_verified(
    client: httpx.AsyncClient,
) -> None:
    email = unique_email()
    await signup(client, email)
    assert_problem(await login(client, email), 403, "email_not_verified")
    assert_problem(await login(client, email, "wrong password"), 401, "invalid_credentials")


async def test_ten_failures_from_one_address_lock_that_address_out_of_the_account_only(
    client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    email = await verified_account(client, mail_sink)
    attacker, owner = unique_ip(), unique_ip()
    for _ in range(10):
        assert_problem(await login(client, email, "guess", ip=attacker),
                       401, "invalid_credentials")
    locked = await login(client, email, ip=attacker)  # the right password, from there
    assert_problem(locked, 429, "too_many_attempts")
    assert 0 < int(locked.headers["Retry-After"]) <= 900
    # A stranger's failures never lock the owner out.
    assert (await login(client, email, ip=owner)).status_code == 200


async def test_failures_from_everywhere_are_a_signal_not_a_lock(
    service: RunningApp, client: httpx.AsyncClient, mail_sink: MailSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    email = await verified_account(client, mail_sink)
    with caplog.at_level(logging.WARNING, logger="user_service.auth.throttle"):
        for _ in range(11):
            assert_problem(await login(client, email, "guess"), 401, "invalid_credentials")
    assert (await login(client, email)).status_code == 200
    user_id = (await client.get("/api/v1/users/me", headers=identity_headers(
        (await login(client, email)).json()["access_token"]))).json()["id"]
    (line,) = [r for r in caplog.records if r.getMessage().startswith("many failed logins")]
    assert (line.user_id, line.failures) == (user_id, 11)  # type: ignore[attr-defined]
    metrics = (await client.get("/metrics")).text
    assert re.search(r"^user_login_failures_on_targeted_accounts_total [1-9]", metrics, re.M)
    assert re.search(r"^user_login_failures_total [1-9]", metrics, re.M)


async def test_concurrent_wrong_passwords_cannot_outrun_the_lock(
    client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    # Every guess is admitted or refused atomically: a burst of guesses sent at once must
    # not all be checked against the password before any of them is counted.
    email = await verified_account(client, mail_sink)
    ip = unique_ip()
    responses = await asyncio.gather(
        *(login(client, email, f"guess {n}", ip=ip) for n in range(30))
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(401) == 10, statuses
    assert statuses.count(429) == 20, statuses
    for response in responses:
        if response.status_code == 429:
            assert_problem(response, 429, "too_many_attempts")
            assert 0 < int(response.headers["Retry-After"]) <= 900
    assert_problem(await login(client, email, ip=ip), 429, "too_many_attempts")


async def test_success_clears_the_failures_of_its_address(
    client: httpx.AsyncClient, mail_sink: MailSink, redis: Redis
) -> None:
    email = await verified_account(client, mail_sink)
    ip = unique_ip()
    for _ in range(3):
        await login(client, email, "guess", ip=ip)
    assert await redis.get(pair_attempts_key(email, ip)) == "3"
    assert 0 < await redis.ttl(pair_attempts_key(email, ip)) <= 900
    assert (await login(client, email, ip=ip)).status_code == 200
    assert await redis.get(pair_attempts_key(email, ip)) is None


async def test_a_busy_address_slows_strangers_and_others_are_not(
    make_settings: SettingsFactory, mail_sink: MailSink
) -> None:
    ip = unique_ip()
    async with running_app(make_settings(login_max_failures_per_ip=3,
                                         login_slowed_interval_seconds=60)) as app:
        client = app.client
        email = await verified_account(client, mail_sink)
        for _ in range(3):
            assert_problem(await login(client, unique_email(), "guess", ip=ip),
                           401, "invalid_credentials")
        for password in ("guess", PASSWORD):
            refused = await login(client, email, password, ip=ip)
            assert_problem(refused, 429, "too_many_attempts")
            assert 0 < int(refused.headers["Retry-After"]) <= 60
        # Another address is unaffected.
        assert (await login(client, email, ip=unique_ip())).status_code == 200


async def test_one_nat_does_not_lock_everyone_behind_it_out(
    make_settings: SettingsFactory, mail_sink: MailSink
) -> None:
    """The attack: wrong logins from a carrier NAT until every login from it is 429, right
    password or not, at the opening. Those who signed in from there before go on; the others
    are slowed (one password check per interval for the address), not refused."""
    nat = unique_ip()
    async with running_app(make_settings(login_max_failures_per_ip=3,
                                         login_slowed_interval_seconds=1)) as app:
        client = app.client
        regular = await verified_account(client, mail_sink)
        newcomer = await verified_account(client, mail_sink)
        assert (await login(client, regular, ip=nat)).status_code == 200
        for _ in range(3):
            assert_problem(await login(client, unique_email(), "guess", ip=nat),
                           401, "invalid_credentials")
        for _ in range(3):
            assert (await login(client, regular, ip=nat)).status_code == 200
        # The guesser's next guess and the newcomer wait for the slow lane...
        assert_problem(await login(client, unique_email(), "guess", ip=nat),
                       429, "too_many_attempts")
        slowed = await login(client, newcomer, ip=nat)
        assert_problem(slowed, 429, "too_many_attempts")
        assert int(slowed.headers["Retry-After"]) == 1
        # ... which opens for one check an interval later.
        for _ in range(30):
            await asyncio.sleep(0.2)
            answer = await login(client, newcomer, ip=nat)
            if answer.status_code != 429:
                break
        assert answer.status_code == 200, answer.text
        # The pair is known from now on.
        assert (await login(client, newcomer, ip=nat)).status_code == 200


async def test_ipv6_addresses_count_by_their_64(
    make_settings: SettingsFactory, mail_sink: MailSink
) -> None:
    # One subscriber holds a whole /64: a new address in it is not a new client.
    async with running_app(make_settings(login_max_failures_per_ip=3)) as app:
        client = app.client
        email = await verified_account(client, mail_sink)
        for host in range(1, 4):
            assert_problem(await login(client, unique_email(), "guess", ip=f"2001:db8:5::{host}"),
                           401, "invalid_credentials")
        assert_problem(await login(client, email, ip="2001:db8:5:0:ffff::9"),
                       429, "too_many_attempts")
        assert (await login(client, email, ip="2001:db8:5:1::1")).status_code == 200


async def test_login_body_is_validated(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post("/api/v1/auth/login", json={"email": unique_email()}),
                   422, "validation_error")
    assert_problem(await client.post("/api/v1/auth/login", json=["not", "an", "object"]),
                   422, "validation_error")


def _accented(email: str) -> str:
    """The same address to an accent-insensitive collation; another mailbox to everyone else."""
    assert email.startswith("user-")
    return "us\u00e9r-" + email.removeprefix("user-")


async def test_a_locked_account_cannot_be_entered_through_an_accented_spelling(
    client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    email = await verified_account(client, mail_sink)
    ip = unique_ip()
    for _ in range(10):
        await login(client, email, "guess", ip=ip)
    assert_problem(await login(client, email, ip=ip), 429, "too_many_attempts")
    # The throttle counts per spelling, so the database must not match other spellings.
    assert_problem(await login(client, _accented(email), ip=ip), 401, "invalid_credentials")


async def test_an_accented_spelling_is_another_address(
    service: RunningApp, client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    email = unique_email()
    await signup(client, email)
    await mail_sink.wait_for(email)
    await after_commit_done(service)
    # Not a way around the one-mail-a-minute limit (each resend also resets the attempts).
    response = await resend(client, _accented(email))
    assert response.status_code == 202
    await after_commit_done(service)
    assert len(mail_sink.mails_to(email)) == 1
    assert (await signup(client, _accented(email))).status_code == 201


# Refresh and logout


async def _refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/api/v1/auth/refresh", json={"refresh_token": token})


async def test_unknown_refresh_token_is_invalid_token(client: httpx.AsyncClient) -> None:
    assert_problem(await _refresh(client, "no-such-token"), 401, "invalid_token")


async def test_reused_refresh_token_revokes_the_whole_session(
    client: httpx.AsyncClient, mail_sink: MailSink, redis: Redis, db_engine: AsyncEngine
) -> None:
    _, tokens, headers = await signed_in(client, mail_sink)
    sid = headers["X-Session-Id"]
    rotated = (await _refresh(client, tokens["refresh_token"])).json()

    assert_problem(await _refresh(client, tokens["refresh_token"]), 401, "token_revoked")
    assert await redis.get(revoked_session_key(sid)) == "1"
    # The thief may hold the rotated token: it dies with the family.
    assert_problem(await _refresh(client, rotated["refresh_token"]), 401, "token_revoked")
    async with db_engine.connect() as conn:
        revoked_at = (await conn.execute(text("SELECT revoked_at FROM sessions WHERE id = :id"),
                                         {"id": sid})).scalar_one()
    assert revoked_at is not None


async def test_expired_refresh_token_is_token_expired(
    client: httpx.AsyncClient, mail_sink: MailSink, db_engine: AsyncEngine
) -> None:
    _, tokens, headers = await signed_in(client, mail_sink)
    async with db_engine.begin() as conn:
        await conn.execute(
            text("UPDATE refresh_tokens SET expires_at = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND "
                 "WHERE session_id = :sid"),
            {"sid": headers["X-Session-Id"]},
        )
    assert_problem(await _refresh(client, tokens["refresh_token"]), 401, "token_expired")


async def test_a_session_ends_90_days_after_its_login_however_often_refreshed(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    now = utcnow()
    old = await make_login_session(session, user=user, created_at=now - timedelta(days=91))
    fresh_token = await make_refresh_token(session, login_session=old,
                                           expires_at=now + timedelta(days=29))
    young = await make_login_session(session, user=user, created_at=now - timedelta(days=89))
    young_token = await make_refresh_token(session, login_session=young)
    await session.commit()
    assert_problem(await _refresh(client, fresh_token), 401, "token_expired")
    rotated = await _refresh(client, young_token)
    assert rotated.status_code == 200
    # The new refresh token ends with the session, a day from now, not 30 days from now.
    expiry = (await session.execute(select(RefreshToken.expires_at).where(
        RefreshToken.token_hash == hash_refresh_token(rotated.json()["refresh_token"])))
    ).scalar_one()
    assert abs(expiry - (young.created_at + timedelta(days=90))) < timedelta(seconds=1)


async def test_concurrent_refreshes_with_one_token_let_exactly_one_win(
    client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    _, tokens, _ = await signed_in(client, mail_sink)
    responses = await asyncio.gather(*(_refresh(client, tokens["refresh_token"]) for _ in range(2)))
    assert sorted(r.status_code for r in responses) == [200, 401]
    loser = next(r for r in responses if r.status_code == 401)
    assert_problem(loser, 401, "token_revoked")


async def test_logout_revokes_the_session_and_its_refresh_token(
    client: httpx.AsyncClient, mail_sink: MailSink, redis: Redis
) -> None:
    email, tokens, headers = await signed_in(client, mail_sink)
    other = (await login(client, email)).json()

    assert (await client.post("/api/v1/auth/logout", headers=headers)).status_code == 204
    assert await redis.get(revoked_session_key(headers["X-Session-Id"])) == "1"
    assert_problem(await _refresh(client, tokens["refresh_token"]), 401, "token_revoked")
    # Only that session: the user's other login goes on.
    assert (await _refresh(client, other["refresh_token"])).status_code == 200


async def test_logout_with_someone_elses_session_id_revokes_nothing(
    client: httpx.AsyncClient, mail_sink: MailSink, redis: Redis
) -> None:
    _, _, mine = await signed_in(client, mail_sink)
    _, their_tokens, theirs = await signed_in(client, mail_sink)
    # As if the gateway itself were fooled into pairing one user with another's session.
    forged = signed_identity_headers(int(mine["X-User-Id"]), theirs["X-Session-Id"])
    assert (await client.post("/api/v1/auth/logout", headers=forged)).status_code == 204
    # The gateway refuses access tokens by this key: it must not be set for their session.
    assert await redis.get(revoked_session_key(theirs["X-Session-Id"])) is None
    assert (await _refresh(client, their_tokens["refresh_token"])).status_code == 200


async def test_logout_needs_the_gateway_identity(
    client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    assert_problem(await client.post("/api/v1/auth/logout"), 401, "missing_token")
    _, _, headers = await signed_in(client, mail_sink)
    unsigned = {"X-User-Id": headers["X-User-Id"], "X-Session-Id": headers["X-Session-Id"]}
    assert_problem(await client.post("/api/v1/auth/logout", headers=unsigned),
                   401, "missing_token")


async def test_new_access_token_of_a_refresh_carries_the_same_session(
    client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    _, tokens, headers = await signed_in(client, mail_sink)
    rotated = (await _refresh(client, tokens["refresh_token"])).json()
    rotated_identity = identity_headers(rotated["access_token"])
    assert rotated_identity["X-User-Id"] == headers["X-User-Id"]
    assert rotated_identity["X-Session-Id"] == headers["X-Session-Id"]


# Password change


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
    # They were failed logins from the caller's address, and from there only.
    assert_problem(await login(client, email, ip="127.0.0.1"), 429, "too_many_attempts")
    assert (await login(client, email)).status_code == 200


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


async def test_two_replicas_mailing_delayed_codes_mail_each_once(
    make_settings: SettingsFactory, mail_sink: MailSink, redis: Redis
) -> None:
    """Both replicas' loops pop the delayed addresses (one atomic pop each): every delayed code
    goes out once, not once per replica."""
    await redis.delete(MAIL_SENT_KEY, MAIL_DELAYED_KEY)
    settings = make_settings(mail_max_per_hour=2, mail_delayed_interval_seconds=0.1)
    try:
        async with running_app(settings) as one, running_app(settings):
            emails = [unique_email() for _ in range(6)]
            for email in emails:
                assert (await signup(one.client, email)).status_code == 201
            await after_commit_done(one)
            assert await redis.zcard(MAIL_DELAYED_KEY) == 4
            await redis.delete(MAIL_SENT_KEY)  # a new hour, twice over
            await mail_sink.wait_for(emails[3])
            await redis.delete(MAIL_SENT_KEY)
            await mail_sink.wait_for(emails[5])
            await asyncio.sleep(0.5)  # a second mail to anyone would have gone by now
            assert [len(mail_sink.mails_to(email)) for email in emails] == [1] * 6
    finally:
        await redis.delete(MAIL_SENT_KEY, MAIL_DELAYED_KEY)
