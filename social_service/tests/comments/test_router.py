"""The comment routes over HTTP: on a post, oldest first, author-only changes, likes, and what a
post's deletion takes with it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.testing.identity import identity_headers, new_user_id
from shared.testing.problems import assert_problem
from social_service.activities.models import Activity
from social_service.comments.models import Comment, CommentLike
from social_service.tests.factories import make_comment, make_post
from social_service.tests.helpers import all_pages


async def new_post(session: AsyncSession) -> int:
    post = await make_post(session, author_id=new_user_id())
    await session.commit()
    return post.id


async def comment(client: httpx.AsyncClient, post_id: int, author_id: int,
                  content: str = "nice") -> dict[str, Any]:
    response = await client.post(f"/api/v1/posts/{post_id}/comments", json={"content": content},
                                 headers=identity_headers(author_id))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def post_counts(client: httpx.AsyncClient, post_id: int) -> int:
    response = await client.get(f"/api/v1/posts/{post_id}", headers=identity_headers(new_user_id()))
    count: int = response.json()["comment_count"]
    return count


async def test_a_comment_belongs_to_its_post_and_counts(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    post_id = await new_post(session)
    author = new_user_id()
    created = await comment(client, post_id, author, "좋아요")
    assert set(created) == {"id", "post_id", "author_id", "content", "like_count", "created_at",
                            "updated_at"}
    assert (created["post_id"], created["author_id"], created["content"]) == (post_id, author, "좋아요")
    assert created["like_count"] == 0
    assert created["created_at"].endswith("Z")
    assert await post_counts(client, post_id) == 1
    fetched = await client.get(f"/api/v1/comments/{created['id']}",
                               headers=identity_headers(author))
    assert fetched.json() == created


async def test_comments_list_oldest_first_across_pages(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    post_id = await new_post(session)
    ids = [(await comment(client, post_id, new_user_id(), f"c{n}"))["id"] for n in range(5)]
    pages = await all_pages(client, f"/api/v1/posts/{post_id}/comments", new_user_id(), limit=2)
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [c["id"] for page in pages for c in page] == ids


async def test_commenting_on_or_listing_an_unknown_post_is_404(client: httpx.AsyncClient) -> None:
    headers = identity_headers(new_user_id())
    url = f"/api/v1/posts/{2**53 - 1}/comments"
    assert_problem(await client.post(url, json={"content": "x"}, headers=headers), 404, "not_found")
    assert_problem(await client.get(url, headers=headers), 404, "not_found")


@pytest.mark.parametrize("body", [{"content": ""}, {"content": " "}, {"content": "x" * 5001},
                                  {"content": "x", "post_id": 1}])
async def test_bad_comment_content_is_422(
    client: httpx.AsyncClient, session: AsyncSession, body: dict[str, Any]
) -> None:
    post_id = await new_post(session)
    response = await client.post(f"/api/v1/posts/{post_id}/comments", json=body,
                                 headers=identity_headers(new_user_id()))
    assert_problem(response, 422, "validation_error")


async def test_only_the_author_may_edit_or_delete_a_comment(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    post_id = await new_post(session)
    author, stranger = new_user_id(), new_user_id()
    created = await comment(client, post_id, author, "first")
    url = f"/api/v1/comments/{created['id']}"
    assert_problem(await client.patch(url, json={"content": "x"}, headers=identity_headers(stranger)),
                   403, "forbidden")
    assert_problem(await client.delete(url, headers=identity_headers(stranger)), 403, "forbidden")

    edited = await client.patch(url, json={"content": "second"}, headers=identity_headers(author))
    assert edited.status_code == 200
    assert edited.json()["content"] == "second"
    assert edited.json()["updated_at"] > created["updated_at"]

    assert (await client.delete(url, headers=identity_headers(author))).status_code == 204
    assert_problem(await client.get(url, headers=identity_headers(author)), 404, "not_found")
    assert_problem(await client.patch(url, json={"content": "x"}, headers=identity_headers(author)),
                   404, "not_found")
    assert await post_counts(client, post_id) == 0


@pytest.mark.parametrize("comment_id", ["0", str(2**53), "x"])
async def test_a_comment_id_out_of_range_is_422(client: httpx.AsyncClient, comment_id: str) -> None:
    headers = identity_headers(new_user_id())
    for method in ("GET", "DELETE"):
        response = await client.request(method, f"/api/v1/comments/{comment_id}", headers=headers)
        assert_problem(response, 422, "validation_error")
    assert_problem(await client.put(f"/api/v1/comments/{comment_id}/like", headers=headers),
                   422, "validation_error")


async def test_comment_likes_are_idempotent_and_exact_under_concurrency(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    post_id = await new_post(session)
    created = await comment(client, post_id, new_user_id())
    url = f"/api/v1/comments/{created['id']}/like"
    users = [new_user_id() for _ in range(25)]
    responses = await asyncio.gather(*(client.put(url, headers=identity_headers(user))
                                       for user in users * 2))
    assert {r.status_code for r in responses} == {204}
    got = await client.get(f"/api/v1/comments/{created['id']}", headers=identity_headers(users[0]))
    assert got.json()["like_count"] == 25

    unlikes = await asyncio.gather(*(client.delete(url, headers=identity_headers(user))
                                     for user in users[:10] * 2))
    assert {r.status_code for r in unlikes} == {204}
    got = await client.get(f"/api/v1/comments/{created['id']}", headers=identity_headers(users[0]))
    assert got.json()["like_count"] == 15


async def test_liking_an_unknown_comment_is_404(client: httpx.AsyncClient) -> None:
    url = f"/api/v1/comments/{2**53 - 1}/like"
    headers = identity_headers(new_user_id())
    assert_problem(await client.put(url, headers=headers), 404, "not_found")
    assert_problem(await client.delete(url, headers=headers), 404, "not_found")


async def test_deleting_a_post_takes_its_comments_likes_and_activities(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    author = new_user_id()
    post = await client.post("/api/v1/posts", json={"content": "p"}, headers=identity_headers(author))
    post_id = post.json()["id"]
    created = await comment(client, post_id, new_user_id())
    fan = identity_headers(new_user_id())
    assert (await client.put(f"/api/v1/comments/{created['id']}/like", headers=fan)).status_code == 204
    assert (await client.put(f"/api/v1/posts/{post_id}/like", headers=fan)).status_code == 204

    assert (await client.delete(f"/api/v1/posts/{post_id}",
                                headers=identity_headers(author))).status_code == 204
    assert_problem(await client.get(f"/api/v1/comments/{created['id']}", headers=fan),
                   404, "not_found")
    assert_problem(await client.put(f"/api/v1/comments/{created['id']}/like", headers=fan),
                   404, "not_found")
    for model, column in ((Comment, Comment.post_id), (Activity, Activity.post_id)):
        left = await session.scalar(select(func.count()).select_from(model).where(column == post_id))
        assert left == 0
    likes = await session.scalar(select(func.count()).select_from(CommentLike)
                                 .where(CommentLike.comment_id == created["id"]))
    assert likes == 0


async def test_concurrent_comments_and_deletes_keep_the_count_exact(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    post = await make_post(session, author_id=new_user_id())
    authors = [new_user_id() for _ in range(6)]
    existing = [await make_comment(session, post=post, author_id=a) for a in authors]
    await session.commit()
    calls = [client.delete(f"/api/v1/comments/{c.id}", headers=identity_headers(c.author_id))
             for c in existing]
    calls += [client.post(f"/api/v1/posts/{post.id}/comments", json={"content": "new"},
                          headers=identity_headers(a)) for a in authors]
    calls += [client.put(f"/api/v1/comments/{c.id}/like", headers=identity_headers(a))
              for c in existing for a in authors[:2]]
    responses = await asyncio.gather(*calls)
    assert all(r.status_code in (201, 204, 404) for r in responses), [r.text for r in responses]
    assert await post_counts(client, post.id) == 6
