"""The follow routes over HTTP, against a real user_service on loopback that says which users
exist: idempotent follows with exact counts, the two lists, and the 404s and 422s."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from shared.testing.identity import identity_headers, new_user_id
from shared.testing.problems import assert_problem
from social_service.follows.repository import FollowsRepository
from social_service.tests.factories import make_account
from social_service.tests.helpers import all_pages


async def follow(client: httpx.AsyncClient, follower: int, followee: int) -> httpx.Response:
    return await client.put(f"/api/v1/follows/{followee}", headers=identity_headers(follower))


async def unfollow(client: httpx.AsyncClient, follower: int, followee: int) -> httpx.Response:
    return await client.delete(f"/api/v1/follows/{followee}", headers=identity_headers(follower))


async def counts(session: AsyncSession, user_id: int) -> tuple[int, int]:
    await session.rollback()  # a fresh read, not what this session saw before
    return await FollowsRepository(session=session).counts(user_id)


async def test_follow_is_idempotent_and_listed_on_both_sides(
    client: httpx.AsyncClient, session: AsyncSession, user_session: AsyncSession
) -> None:
    me, star = await make_account(user_session), await make_account(user_session)
    for _ in range(2):
        response = await follow(client, me, star)
        assert response.status_code == 204
        assert response.content == b""
    followers = await client.get(f"/api/v1/users/{star}/followers", headers=identity_headers(me))
    assert followers.status_code == 200
    [entry] = followers.json()["items"]
    assert set(entry) == {"user_id", "followed_at"}
    assert entry["user_id"] == me
    assert entry["followed_at"].endswith("Z")
    following = await client.get(f"/api/v1/users/{me}/following", headers=identity_headers(me))
    assert following.json() == {"items": [{"user_id": star, "followed_at": entry["followed_at"]}],
                                "next_cursor": None}
    assert await counts(session, star) == (1, 0)
    assert await counts(session, me) == (0, 1)

    for _ in range(2):
        assert (await unfollow(client, me, star)).status_code == 204
    assert (await client.get(f"/api/v1/users/{star}/followers",
                             headers=identity_headers(me))).json()["items"] == []
    assert await counts(session, star) == (0, 0)
    assert await counts(session, me) == (0, 0)


async def test_following_yourself_is_422(client: httpx.AsyncClient, user_session: AsyncSession) -> None:
    me = await make_account(user_session)
    assert_problem(await follow(client, me, me), 422, "validation_error")
    assert_problem(await unfollow(client, me, me), 422, "validation_error")


async def test_an_unknown_user_is_404_to_follow_and_to_list(client: httpx.AsyncClient) -> None:
    me, nobody = new_user_id(), new_user_id()
    assert_problem(await follow(client, me, nobody), 404, "not_found")
    for side in ("followers", "following"):
        response = await client.get(f"/api/v1/users/{nobody}/{side}", headers=identity_headers(me))
        assert_problem(response, 404, "not_found")
    # Undoing a follow never asks: an account deleted since must still be unfollowable.
    assert (await unfollow(client, me, nobody)).status_code == 204


@pytest.mark.parametrize("user_id", ["0", str(2**53), "abc"])
async def test_a_user_id_out_of_range_is_422(client: httpx.AsyncClient, user_id: str) -> None:
    headers = identity_headers(new_user_id())
    assert_problem(await client.put(f"/api/v1/follows/{user_id}", headers=headers),
                   422, "validation_error")
    assert_problem(await client.get(f"/api/v1/users/{user_id}/followers", headers=headers),
                   422, "validation_error")


async def test_follower_lists_page_newest_first(
    client: httpx.AsyncClient, user_session: AsyncSession
) -> None:
    star = await make_account(user_session)
    fans = [await make_account(user_session) for _ in range(5)]
    for fan in fans:
        assert (await follow(client, fan, star)).status_code == 204
    pages = await all_pages(client, f"/api/v1/users/{star}/followers", star, limit=2)
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [entry["user_id"] for page in pages for entry in page] == fans[::-1]
    assert_problem(await client.get(f"/api/v1/users/{star}/followers", params={"cursor": "@@"},
                                    headers=identity_headers(star)), 422, "validation_error")


async def test_concurrent_follows_and_unfollows_keep_counts_exact(
    client: httpx.AsyncClient, session: AsyncSession, user_session: AsyncSession
) -> None:
    star = await make_account(user_session)
    fans = [new_user_id() for _ in range(25)]
    responses = await asyncio.gather(*(follow(client, fan, star) for fan in fans * 2))
    assert {r.status_code for r in responses} == {204}
    assert await counts(session, star) == (25, 0)

    calls = [unfollow(client, fan, star) for fan in fans[:10] * 2]
    calls += [follow(client, fan, star) for fan in fans[10:15]]
    assert {r.status_code for r in await asyncio.gather(*calls)} == {204}
    assert await counts(session, star) == (15, 0)
    assert await counts(session, fans[0]) == (0, 0)
    assert await counts(session, fans[20]) == (0, 1)


async def test_two_users_following_each_other_at_once_do_not_deadlock(
    client: httpx.AsyncClient, session: AsyncSession, user_session: AsyncSession
) -> None:
    ann, bob = await make_account(user_session), await make_account(user_session)
    calls = [follow(client, ann, bob), follow(client, bob, ann)] * 5
    calls += [unfollow(client, ann, bob), unfollow(client, bob, ann)] * 5
    assert {r.status_code for r in await asyncio.gather(*calls)} == {204}
    ann_counts, bob_counts = await counts(session, ann), await counts(session, bob)
    assert ann_counts == (bob_counts[1], bob_counts[0])
