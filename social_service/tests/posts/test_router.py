"""The post routes over HTTP: writing, reading, editing and deleting posts, likes, and the bad
input that must be a 4xx problem, never a 500."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.testing.identity import identity_headers, new_user_id
from shared.testing.problems import assert_problem
from social_service.posts.models import Post, PostLike
from social_service.tests.factories import make_post
from social_service.tests.helpers import all_pages


async def create_post(client: httpx.AsyncClient, author_id: int, content: str = "hello") -> dict[str, Any]:
    response = await client.post("/api/v1/posts", json={"content": content},
                                 headers=identity_headers(author_id))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def get_post(client: httpx.AsyncClient, post_id: int) -> httpx.Response:
    return await client.get(f"/api/v1/posts/{post_id}", headers=identity_headers(new_user_id()))


async def test_a_created_post_reads_back_as_written(client: httpx.AsyncClient) -> None:
    author = new_user_id()
    created = await create_post(client, author, "첫 글 ✨")
    assert set(created) == {"id", "author_id", "content", "like_count", "comment_count",
                            "created_at", "updated_at"}
    assert (created["author_id"], created["content"]) == (author, "첫 글 ✨")
    assert (created["like_count"], created["comment_count"]) == (0, 0)
    assert created["created_at"].endswith("Z")
    assert created["updated_at"] == created["created_at"]
    assert 0 < created["id"] < 2**53
    fetched = await get_post(client, created["id"])
    assert fetched.status_code == 200
    assert fetched.json() == created


async def test_content_of_exactly_5000_characters_is_accepted(client: httpx.AsyncClient) -> None:
    created = await create_post(client, new_user_id(), "가" * 5000)
    assert len(created["content"]) == 5000


@pytest.mark.parametrize("body", [
    {"content": ""},
    {"content": "   \n"},
    {"content": "x" * 5001},
    {"content": None},
    {"content": 5},
    {},
    {"content": "hi", "author_id": 1},
])
async def test_bad_content_is_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await client.post("/api/v1/posts", json=body, headers=identity_headers(new_user_id()))
    assert_problem(response, 422, "validation_error")


async def test_malformed_json_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/posts", content=b'{"content": ',
                                 headers={**identity_headers(new_user_id()),
                                          "content-type": "application/json"})
    assert_problem(response, 422, "validation_error")


async def test_every_route_needs_the_gateway_identity(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post("/api/v1/posts", json={"content": "x"}), 401, "missing_token")
    assert_problem(await client.get("/api/v1/posts"), 401, "missing_token")


@pytest.mark.parametrize("post_id", ["0", "-1", str(2**53), "abc", "1.5", "9" * 30])
async def test_a_post_id_out_of_range_is_422(client: httpx.AsyncClient, post_id: str) -> None:
    headers = identity_headers(new_user_id())
    assert_problem(await client.get(f"/api/v1/posts/{post_id}", headers=headers),
                   422, "validation_error")
    assert_problem(await client.put(f"/api/v1/posts/{post_id}/like", headers=headers),
                   422, "validation_error")


async def test_an_unknown_post_is_404(client: httpx.AsyncClient) -> None:
    headers = identity_headers(new_user_id())
    unknown = 2**53 - 1
    assert_problem(await get_post(client, unknown), 404, "not_found")
    assert_problem(await client.patch(f"/api/v1/posts/{unknown}", json={"content": "x"},
                                      headers=headers), 404, "not_found")
    assert_problem(await client.delete(f"/api/v1/posts/{unknown}", headers=headers),
                   404, "not_found")
    assert_problem(await client.put(f"/api/v1/posts/{unknown}/like", headers=headers),
                   404, "not_found")
    assert_problem(await client.delete(f"/api/v1/posts/{unknown}/like", headers=headers),
                   404, "not_found")


async def test_only_the_author_may_edit_or_delete(client: httpx.AsyncClient) -> None:
    author, stranger = new_user_id(), new_user_id()
    post = await create_post(client, author, "original")
    url = f"/api/v1/posts/{post['id']}"
    assert_problem(await client.patch(url, json={"content": "hijacked"},
                                      headers=identity_headers(stranger)), 403, "forbidden")
    assert_problem(await client.delete(url, headers=identity_headers(stranger)), 403, "forbidden")
    assert (await get_post(client, post["id"])).json() == post

    edited = await client.patch(url, json={"content": "edited"}, headers=identity_headers(author))
    assert edited.status_code == 200
    assert edited.json()["content"] == "edited"
    assert edited.json()["created_at"] == post["created_at"]
    assert edited.json()["updated_at"] > post["updated_at"]
    assert (await get_post(client, post["id"])).json() == edited.json()

    deleted = await client.delete(url, headers=identity_headers(author))
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert_problem(await get_post(client, post["id"]), 404, "not_found")
    assert_problem(await client.delete(url, headers=identity_headers(author)), 404, "not_found")


async def test_edit_validates_like_create(client: httpx.AsyncClient) -> None:
    author = new_user_id()
    post = await create_post(client, author)
    for body in ({"content": ""}, {"content": "x" * 5001}, {"text": "x"}):
        response = await client.patch(f"/api/v1/posts/{post['id']}", json=body,
                                      headers=identity_headers(author))
        assert_problem(response, 422, "validation_error")


async def test_list_by_author_is_newest_first_and_pages_without_overlap(
    client: httpx.AsyncClient,
) -> None:
    author, other = new_user_id(), new_user_id()
    ids = [(await create_post(client, author, f"post {n}"))["id"] for n in range(7)]
    await create_post(client, other, "not theirs")
    pages = await all_pages(client, "/api/v1/posts", author, limit=3, author_id=author)
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [post["id"] for page in pages for post in page] == ids[::-1]


async def test_list_without_author_shows_everyones_posts(client: httpx.AsyncClient) -> None:
    first = await create_post(client, new_user_id())
    second = await create_post(client, new_user_id())
    response = await client.get("/api/v1/posts", params={"limit": 2},
                                headers=identity_headers(new_user_id()))
    assert [post["id"] for post in response.json()["items"]] == [second["id"], first["id"]]


async def test_default_page_size_is_20(client: httpx.AsyncClient) -> None:
    author = new_user_id()
    for _ in range(21):
        await create_post(client, author)
    response = await client.get("/api/v1/posts", params={"author_id": author},
                                headers=identity_headers(author))
    body = response.json()
    assert len(body["items"]) == 20
    assert body["next_cursor"]


async def test_an_author_without_posts_has_an_empty_list(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/posts", params={"author_id": new_user_id()},
                                headers=identity_headers(new_user_id()))
    assert response.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("params", [
    {"limit": 0}, {"limit": 101}, {"limit": "x"}, {"author_id": 0}, {"author_id": 2**53},
    {"cursor": "not a cursor"}, {"cursor": "e30"}, {"cursor": "eyJ0IjoxLCJpZCI6MH0"},
    {"cursor": "eyJ0Ijo5OTk5OTk5OTk5OTk5OTk5OTk5OSwiaWQiOjF9"}, {"cursor": "x" * 513},
])
async def test_bad_list_parameters_are_422(client: httpx.AsyncClient, params: dict[str, Any]) -> None:
    response = await client.get("/api/v1/posts", params=params,
                                headers=identity_headers(new_user_id()))
    assert_problem(response, 422, "validation_error")


async def test_like_and_unlike_are_idempotent(client: httpx.AsyncClient) -> None:
    post = await create_post(client, new_user_id())
    url = f"/api/v1/posts/{post['id']}/like"
    fan = identity_headers(new_user_id())
    assert (await client.delete(url, headers=fan)).status_code == 204  # never liked: no change
    assert (await get_post(client, post["id"])).json()["like_count"] == 0
    for _ in range(2):
        response = await client.put(url, headers=fan)
        assert response.status_code == 204
        assert response.content == b""
    assert (await get_post(client, post["id"])).json()["like_count"] == 1
    for _ in range(2):
        assert (await client.delete(url, headers=fan)).status_code == 204
    assert (await get_post(client, post["id"])).json()["like_count"] == 0


async def test_concurrent_likes_count_each_user_once(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    post = await create_post(client, new_user_id())
    url = f"/api/v1/posts/{post['id']}/like"
    users = [new_user_id() for _ in range(25)]
    responses = await asyncio.gather(*(client.put(url, headers=identity_headers(user))
                                       for user in users * 2))
    assert [r.status_code for r in responses] == [204] * 50
    assert (await get_post(client, post["id"])).json()["like_count"] == 25
    likes = await session.scalar(select(func.count()).select_from(PostLike)
                                 .where(PostLike.post_id == post["id"]))
    assert likes == 25


async def test_concurrent_likes_and_unlikes_keep_the_count_exact(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    post = await make_post(session, author_id=new_user_id())
    await session.commit()
    url = f"/api/v1/posts/{post.id}/like"
    users = [new_user_id() for _ in range(10)]
    calls = [client.put(url, headers=identity_headers(user)) for user in users]
    calls += [client.delete(url, headers=identity_headers(user)) for user in users * 2]
    calls += [client.put(url, headers=identity_headers(user)) for user in users[:5]]
    responses = await asyncio.gather(*calls)
    assert {r.status_code for r in responses} == {204}
    likes = await session.scalar(select(func.count()).select_from(PostLike)
                                 .where(PostLike.post_id == post.id))
    count = await session.scalar(select(Post.like_count).where(Post.id == post.id)
                                 .execution_options(populate_existing=True))
    assert count == likes
    assert count is not None
    assert 0 <= count <= 10


async def test_a_lone_surrogate_is_422_and_emoji_are_kept(client: httpx.AsyncClient) -> None:
    headers = {**identity_headers(new_user_id()), "content-type": "application/json"}
    lone = await client.post("/api/v1/posts", content=b'{"content": "\\ud800"}', headers=headers)
    assert_problem(lone, 422, "validation_error")
    emoji = await client.post("/api/v1/posts", json={"content": "😀👍🏽"}, headers=headers)
    assert emoji.json()["content"] == "😀👍🏽"
