"""Every case of API.md's "Social" section through the real gateway, with social_service asking
the real user_service (over its internal route) whether users exist; all of it uvicorn
processes on loopback with real MariaDB and Redis."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from gateway.tests.e2e import System, User, new_user
from shared.testing.problems import assert_problem

MAX_ID = 2**53 - 1


@pytest.fixture(scope="module")
async def people(system: System) -> list[User]:
    """Four accounts, signed up once for the module (each sign-up hashes a password)."""
    async with httpx.AsyncClient(base_url=system.gateway.url, timeout=15) as api:
        return list(await asyncio.gather(*(new_user(api, system) for _ in range(4))))


async def write_post(api: httpx.AsyncClient, user: User, content: str = "hello") -> dict[str, Any]:
    response = await api.post("/api/v1/posts", json={"content": content}, headers=user.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def pages(api: httpx.AsyncClient, url: str, user: User, *, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await api.get(url, params=params, headers=user.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"items", "next_cursor"}
        assert len(body["items"]) <= limit
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


async def test_posts_are_written_read_edited_and_deleted_by_their_author(
    api: httpx.AsyncClient, people: list[User]
) -> None:
    ann, bob = people[0], people[1]
    created = await write_post(api, ann, "첫 글")
    assert set(created) == {"id", "author_id", "content", "like_count", "comment_count",
                            "created_at", "updated_at"}
    assert (created["author_id"], created["content"], created["like_count"],
            created["comment_count"]) == (ann.id, "첫 글", 0, 0)
    assert created["created_at"].endswith("Z")
    url = f"/api/v1/posts/{created['id']}"
    assert (await api.get(url, headers=bob.headers)).json() == created

    assert_problem(await api.patch(url, json={"content": "x"}, headers=bob.headers), 403, "forbidden")
    assert_problem(await api.delete(url, headers=bob.headers), 403, "forbidden")
    edited = await api.patch(url, json={"content": "고친 글"}, headers=ann.headers)
    assert edited.status_code == 200
    assert edited.json()["content"] == "고친 글"

    assert (await api.delete(url, headers=ann.headers)).status_code == 204
    assert_problem(await api.get(url, headers=ann.headers), 404, "not_found")
    assert_problem(await api.patch(url, json={"content": "x"}, headers=ann.headers), 404, "not_found")


async def test_post_content_is_1_to_5000_characters(api: httpx.AsyncClient, people: list[User]) -> None:
    assert (await write_post(api, people[0], "x" * 5000))["content"] == "x" * 5000
    for body in ({"content": ""}, {"content": "x" * 5001}, {"content": "ok", "extra": 1}, {}):
        assert_problem(await api.post("/api/v1/posts", json=body, headers=people[0].headers),
                       422, "validation_error")


async def test_posts_by_author_newest_first_in_pages(api: httpx.AsyncClient, people: list[User]) -> None:
    author, reader = people[2], people[3]
    ids = [(await write_post(api, author, f"n{n}"))["id"] for n in range(5)]
    listed = await pages(api, f"/api/v1/posts?author_id={author.id}", reader, limit=2)
    assert [post["id"] for post in listed][:5] == ids[::-1]


async def test_comments_oldest_first_changed_by_their_author_only(
    api: httpx.AsyncClient, people: list[User]
) -> None:
    ann, bob = people[0], people[1]
    post = await write_post(api, ann)
    url = f"/api/v1/posts/{post['id']}/comments"
    made = []
    for n in range(3):
        response = await api.post(url, json={"content": f"c{n}"}, headers=bob.headers)
        assert response.status_code == 201, response.text
        made.append(response.json())
    assert set(made[0]) == {"id", "post_id", "author_id", "content", "like_count", "created_at",
                            "updated_at"}
    assert (made[0]["post_id"], made[0]["author_id"], made[0]["like_count"]) == (post["id"], bob.id, 0)
    assert [c["id"] for c in await pages(api, url, ann, limit=2)] == [c["id"] for c in made]
    assert (await api.get(f"/api/v1/posts/{post['id']}", headers=ann.headers)).json()["comment_count"] == 3

    comment_url = f"/api/v1/comments/{made[0]['id']}"
    assert_problem(await api.patch(comment_url, json={"content": "x"}, headers=ann.headers),
                   403, "forbidden")
    assert_problem(await api.delete(comment_url, headers=ann.headers), 403, "forbidden")
    edited = await api.patch(comment_url, json={"content": "edited"}, headers=bob.headers)
    assert edited.json()["content"] == "edited"
    assert (await api.delete(comment_url, headers=bob.headers)).status_code == 204
    assert_problem(await api.patch(comment_url, json={"content": "x"}, headers=bob.headers),
                   404, "not_found")
    assert_problem(await api.post(f"/api/v1/posts/{MAX_ID}/comments", json={"content": "x"},
                                  headers=bob.headers), 404, "not_found")


async def test_likes_are_idempotent_and_exact(api: httpx.AsyncClient, people: list[User]) -> None:
    post = await write_post(api, people[0])
    comment = (await api.post(f"/api/v1/posts/{post['id']}/comments", json={"content": "c"},
                              headers=people[1].headers)).json()
    for target, read in ((f"/api/v1/posts/{post['id']}", f"/api/v1/posts/{post['id']}"),
                         (f"/api/v1/comments/{comment['id']}", f"/api/v1/comments/{comment['id']}")):
        like = f"{target}/like"
        responses = await asyncio.gather(*(api.put(like, headers=user.headers)
                                           for user in people * 3))
        assert {r.status_code for r in responses} == {204}
        assert (await api.get(read, headers=people[0].headers)).json()["like_count"] == 4
        unlikes = await asyncio.gather(*(api.delete(like, headers=user.headers)
                                         for user in people[:2] * 2))
        assert {r.status_code for r in unlikes} == {204}
        assert (await api.get(read, headers=people[0].headers)).json()["like_count"] == 2


async def test_follows_lists_and_their_errors(
    api: httpx.AsyncClient, people: list[User], system: System
) -> None:
    fan, star = await new_user(api, system), await new_user(api, system)
    for _ in range(2):
        assert (await api.put(f"/api/v1/follows/{star.id}", headers=fan.headers)).status_code == 204
    followers = (await api.get(f"/api/v1/users/{star.id}/followers", headers=fan.headers)).json()
    assert [f["user_id"] for f in followers["items"]] == [fan.id]
    assert set(followers["items"][0]) == {"user_id", "followed_at"}
    assert followers["items"][0]["followed_at"].endswith("Z")
    following = (await api.get(f"/api/v1/users/{fan.id}/following", headers=star.headers)).json()
    assert following == {"items": [{"user_id": star.id,
                                    "followed_at": followers["items"][0]["followed_at"]}],
                         "next_cursor": None}

    assert_problem(await api.put(f"/api/v1/follows/{fan.id}", headers=fan.headers),
                   422, "validation_error")
    assert_problem(await api.put(f"/api/v1/follows/{MAX_ID}", headers=fan.headers), 404, "not_found")
    assert_problem(await api.get(f"/api/v1/users/{MAX_ID}/followers", headers=fan.headers),
                   404, "not_found")
    assert_problem(await api.get(f"/api/v1/users/{MAX_ID}/following", headers=fan.headers),
                   404, "not_found")

    for _ in range(2):
        assert (await api.delete(f"/api/v1/follows/{star.id}", headers=fan.headers)).status_code == 204
    assert (await api.get(f"/api/v1/users/{star.id}/followers",
                          headers=fan.headers)).json()["items"] == []


async def test_the_feed_pages_hold_still_while_posts_arrive(
    api: httpx.AsyncClient, system: System
) -> None:
    reader, ann, bob = [await new_user(api, system) for _ in range(3)]
    for author in (ann, bob):
        assert (await api.put(f"/api/v1/follows/{author.id}", headers=reader.headers)).status_code == 204
    written = [(await write_post(api, (ann, bob)[n % 2], f"p{n}"))["id"] for n in range(9)]

    seen: list[int] = []
    arrived: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/api/v1/feed", params=params, headers=reader.headers)).json()
        seen += [post["id"] for post in page["items"]]
        arrived.append((await write_post(api, ann, "meanwhile"))["id"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == written[::-1]
    fresh = (await api.get("/api/v1/feed", params={"limit": len(arrived)},
                           headers=reader.headers)).json()
    assert [post["id"] for post in fresh["items"]] == arrived[::-1]

    assert (await api.delete(f"/api/v1/posts/{arrived[-1]}", headers=ann.headers)).status_code == 204
    assert (await api.delete(f"/api/v1/follows/{bob.id}", headers=reader.headers)).status_code == 204
    remaining = await pages(api, "/api/v1/feed", reader, limit=5)
    assert [p["id"] for p in remaining] == [*arrived[-2::-1], *written[-1::-2]]
    assert {p["author_id"] for p in remaining} == {ann.id}


async def test_activities_both_ways(api: httpx.AsyncClient, system: System) -> None:
    ann, bob, carl = [await new_user(api, system) for _ in range(3)]
    await api.put(f"/api/v1/follows/{ann.id}", headers=bob.headers)
    carl_post = await write_post(api, carl)
    ann_post = await write_post(api, ann)
    comment = (await api.post(f"/api/v1/posts/{carl_post['id']}/comments", json={"content": "c"},
                              headers=ann.headers)).json()
    await api.put(f"/api/v1/posts/{carl_post['id']}/like", headers=ann.headers)
    await api.put(f"/api/v1/comments/{comment['id']}/like", headers=carl.headers)
    await api.put(f"/api/v1/follows/{carl.id}", headers=ann.headers)

    to_bob = await pages(api, "/api/v1/activities", bob, limit=2)
    assert set(to_bob[0]) == {"id", "actor_id", "type", "target_type", "target_id", "created_at"}
    assert [(a["type"], a["target_type"], a["target_id"]) for a in to_bob] == [
        ("followed", "user", carl.id),
        ("post_liked", "post", carl_post["id"]),
        ("comment_created", "comment", comment["id"]),
        ("post_created", "post", ann_post["id"]),
    ]
    assert {a["actor_id"] for a in to_bob} == {ann.id}

    to_ann = await pages(api, "/api/v1/activities", ann, limit=10)
    assert [(a["type"], a["actor_id"]) for a in to_ann] == [
        ("comment_liked", carl.id),  # done to Ann's comment, by someone she follows
        ("post_created", carl.id),
        ("followed", bob.id),
    ]
    to_carl = await pages(api, "/api/v1/activities", carl, limit=10)
    assert [(a["type"], a["actor_id"]) for a in to_carl] == [
        ("followed", ann.id), ("post_liked", ann.id), ("comment_created", ann.id)]


@pytest.mark.parametrize("path", [
    "/api/v1/posts/0", f"/api/v1/posts/{2**53}", "/api/v1/posts/abc", "/api/v1/comments/0",
    "/api/v1/users/0/followers", "/api/v1/posts?limit=0", "/api/v1/posts?limit=101",
    "/api/v1/feed?cursor=garbage", "/api/v1/activities?cursor=eyJ0IjotMSwiaWQiOjF9",
    "/api/v1/users/1/following?cursor=%7B%7D",
])
async def test_bad_input_is_422_never_500(api: httpx.AsyncClient, people: list[User], path: str) -> None:
    assert_problem(await api.get(path, headers=people[0].headers), 422, "validation_error")


async def test_social_routes_need_a_token_and_internal_ones_are_not_routed(
    api: httpx.AsyncClient, people: list[User]
) -> None:
    for path in ("/api/v1/feed", "/api/v1/activities", "/api/v1/posts",
                 f"/api/v1/users/{people[0].id}/followers"):
        assert_problem(await api.get(path), 401, "missing_token")
    assert_problem(await api.get(f"/internal/users/{people[0].id}", headers=people[0].headers),
                   404, "not_found")


async def test_a_follow_carries_the_request_id_to_user_service(
    api: httpx.AsyncClient, system: System, people: list[User]
) -> None:
    star = await new_user(api, system)
    request_id = f"e2e-social-{uuid.uuid4().hex}"
    response = await api.put(f"/api/v1/follows/{star.id}",
                             headers={**people[0].headers, "X-Request-Id": request_id})
    assert response.status_code == 204
    await system.wait_for_logged(request_id, "social", "user")


async def test_merged_openapi_lists_the_social_routes(api: httpx.AsyncClient) -> None:
    document = (await api.get("/openapi.json")).json()
    for path in ("/api/v1/posts", "/api/v1/posts/{post_id}", "/api/v1/posts/{post_id}/like",
                 "/api/v1/posts/{post_id}/comments", "/api/v1/comments/{comment_id}",
                 "/api/v1/comments/{comment_id}/like", "/api/v1/follows/{user_id}",
                 "/api/v1/users/{user_id}/followers", "/api/v1/users/{user_id}/following",
                 "/api/v1/feed", "/api/v1/activities"):
        assert path in document["paths"], path
