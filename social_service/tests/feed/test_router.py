"""The newsfeed and the activity stream over HTTP: who appears in them, in what order, and that
paging holds still while people keep writing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import utcnow
from shared.testing.identity import identity_headers, new_user_id
from shared.testing.problems import assert_problem
from social_service.tests.factories import make_account, make_follow, make_post
from social_service.tests.helpers import all_pages


async def feed_page(client: httpx.AsyncClient, user_id: int, *, limit: int = 20,
                    cursor: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
    response = await client.get("/api/v1/feed", params=params, headers=identity_headers(user_id))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def post(client: httpx.AsyncClient, author_id: int, content: str = "p") -> int:
    response = await client.post("/api/v1/posts", json={"content": content},
                                 headers=identity_headers(author_id))
    assert response.status_code == 201, response.text
    post_id: int = response.json()["id"]
    return post_id


async def test_the_feed_holds_the_followed_authors_posts_newest_first(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    me, ann, bob, stranger = (new_user_id() for _ in range(4))
    for author in (ann, bob):
        await make_follow(session, follower_id=me, followee_id=author)
    await session.commit()
    expected = [await post(client, author) for author in (ann, bob, ann, bob)]
    await post(client, stranger)
    await post(client, me)  # one's own posts are not in one's feed
    body = await feed_page(client, me)
    assert [p["id"] for p in body["items"]] == expected[::-1]
    assert body["next_cursor"] is None
    assert set(body["items"][0]) == {"id", "author_id", "content", "like_count", "comment_count",
                                     "created_at", "updated_at"}


async def test_an_empty_feed(client: httpx.AsyncClient) -> None:
    assert await feed_page(client, new_user_id()) == {"items": [], "next_cursor": None}


async def test_pages_neither_repeat_nor_skip_while_posts_arrive(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    me = new_user_id()
    authors = [new_user_id() for _ in range(3)]
    start = utcnow() - timedelta(hours=1)
    existing = []
    for n in range(30):
        # Every second post shares its timestamp with the one before: ties break by id.
        made = await make_post(session, author_id=authors[n % 3],
                               created_at=start + timedelta(seconds=n // 2))
        existing.append(made.id)
    for author in authors:
        await make_follow(session, follower_id=me, followee_id=author)
    await session.commit()

    seen: list[int] = []
    arrived: list[int] = []
    cursor = None
    while True:
        page = await feed_page(client, me, limit=7, cursor=cursor)
        seen += [p["id"] for p in page["items"]]
        arrived.append(await post(client, authors[len(arrived) % 3]))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    ordered = sorted(existing, key=lambda i: (start + timedelta(seconds=existing.index(i) // 2), i))
    assert seen == ordered[::-1]
    # What arrived meanwhile is at the top of a fresh first page.
    fresh = await feed_page(client, me, limit=len(arrived))
    assert [p["id"] for p in fresh["items"]] == arrived[::-1]


async def test_unfollowing_removes_the_authors_posts_and_deleting_removes_a_post(
    client: httpx.AsyncClient, user_session: AsyncSession
) -> None:
    me, ann, bob = [await make_account(user_session) for _ in range(3)]
    for author in (ann, bob):
        assert (await client.put(f"/api/v1/follows/{author}",
                                 headers=identity_headers(me))).status_code == 204
    ann_posts = [await post(client, ann) for _ in range(3)]
    bob_posts = [await post(client, bob) for _ in range(3)]
    assert {p["id"] for p in (await feed_page(client, me))["items"]} == {*ann_posts, *bob_posts}

    assert (await client.delete(f"/api/v1/follows/{ann}",
                                headers=identity_headers(me))).status_code == 204
    assert [p["id"] for p in (await feed_page(client, me))["items"]] == bob_posts[::-1]

    assert (await client.delete(f"/api/v1/posts/{bob_posts[1]}",
                                headers=identity_headers(bob))).status_code == 204
    assert [p["id"] for p in (await feed_page(client, me))["items"]] == [bob_posts[2], bob_posts[0]]

    # Following again brings the author's posts back, older ones included.
    assert (await client.put(f"/api/v1/follows/{ann}",
                             headers=identity_headers(me))).status_code == 204
    assert {p["id"] for p in (await feed_page(client, me))["items"]} == {
        *ann_posts, bob_posts[0], bob_posts[2]}


async def test_the_feed_shows_current_counts_and_content(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    me, ann = new_user_id(), new_user_id()
    await make_follow(session, follower_id=me, followee_id=ann)
    await session.commit()
    post_id = await post(client, ann, "before")
    assert (await client.put(f"/api/v1/posts/{post_id}/like",
                             headers=identity_headers(me))).status_code == 204
    assert (await client.patch(f"/api/v1/posts/{post_id}", json={"content": "after"},
                               headers=identity_headers(ann))).status_code == 200
    [shown] = (await feed_page(client, me))["items"]
    assert (shown["content"], shown["like_count"]) == ("after", 1)


async def test_bad_feed_parameters_are_422(client: httpx.AsyncClient) -> None:
    headers = identity_headers(new_user_id())
    for params in ({"limit": 0}, {"limit": 101}, {"cursor": "%%%"}, {"cursor": "eyJ0IjotMSwiaWQiOjF9"}):
        for url in ("/api/v1/feed", "/api/v1/activities"):
            assert_problem(await client.get(url, params=params, headers=headers),
                           422, "validation_error")
    assert_problem(await client.get("/api/v1/feed"), 401, "missing_token")


async def activities(client: httpx.AsyncClient, user_id: int) -> list[tuple[str, str, int, int]]:
    """(type, target_type, target_id, actor_id) of every activity the user sees, newest first."""
    pages = await all_pages(client, "/api/v1/activities", user_id, limit=3)
    return [(a["type"], a["target_type"], a["target_id"], a["actor_id"])
            for page in pages for a in page]


async def test_activities_of_every_type_in_both_directions(
    client: httpx.AsyncClient, user_session: AsyncSession
) -> None:
    """Bob follows Ann. Ann acts on Carl's things (Bob sees it: someone he follows did it);
    Dan acts on Ann's things (Ann sees it: it was done to her)."""
    ann, bob, carl, dan = [await make_account(user_session) for _ in range(4)]
    assert (await client.put(f"/api/v1/follows/{ann}", headers=identity_headers(bob))).status_code == 204
    carl_post = await post(client, carl)
    carl_comment = (await client.post(f"/api/v1/posts/{carl_post}/comments", json={"content": "c"},
                                      headers=identity_headers(carl))).json()["id"]

    ann_post = await post(client, ann)
    ann_comment = (await client.post(f"/api/v1/posts/{carl_post}/comments", json={"content": "a"},
                                     headers=identity_headers(ann))).json()["id"]
    await client.put(f"/api/v1/posts/{carl_post}/like", headers=identity_headers(ann))
    await client.put(f"/api/v1/comments/{carl_comment}/like", headers=identity_headers(ann))
    await client.put(f"/api/v1/follows/{carl}", headers=identity_headers(ann))

    assert await activities(client, bob) == [
        ("followed", "user", carl, ann),
        ("comment_liked", "comment", carl_comment, ann),
        ("post_liked", "post", carl_post, ann),
        ("comment_created", "comment", ann_comment, ann),
        ("post_created", "post", ann_post, ann),
    ]

    dan_comment = (await client.post(f"/api/v1/posts/{ann_post}/comments", json={"content": "d"},
                                     headers=identity_headers(dan))).json()["id"]
    await client.put(f"/api/v1/posts/{ann_post}/like", headers=identity_headers(dan))
    await client.put(f"/api/v1/comments/{ann_comment}/like", headers=identity_headers(dan))
    await client.put(f"/api/v1/follows/{ann}", headers=identity_headers(dan))
    to_ann = [
        ("followed", "user", ann, dan),
        ("comment_liked", "comment", ann_comment, dan),
        ("post_liked", "post", ann_post, dan),
        ("comment_created", "comment", dan_comment, dan),
        # Ann follows Carl: what he did shows too.
        ("comment_created", "comment", carl_comment, carl),
        ("post_created", "post", carl_post, carl),
        ("followed", "user", ann, bob),
    ]
    assert await activities(client, ann) == to_ann
    # Carl sees what was done to him (Ann's actions) but not Dan's, which were not.
    assert [a for a in await activities(client, carl) if a[3] == dan] == []
    # One's own likes of one's own things are nobody's news to oneself.
    await client.put(f"/api/v1/posts/{ann_post}/like", headers=identity_headers(ann))
    assert await activities(client, ann) == to_ann


async def test_undoing_or_deleting_removes_the_activity(
    client: httpx.AsyncClient, user_session: AsyncSession
) -> None:
    ann, bob = await make_account(user_session), await make_account(user_session)
    await client.put(f"/api/v1/follows/{ann}", headers=identity_headers(bob))
    ann_post = await post(client, ann)
    await client.put(f"/api/v1/posts/{ann_post}/like", headers=identity_headers(bob))
    assert [a[0] for a in await activities(client, ann)] == ["post_liked", "followed"]

    await client.delete(f"/api/v1/posts/{ann_post}/like", headers=identity_headers(bob))
    await client.delete(f"/api/v1/follows/{ann}", headers=identity_headers(bob))
    assert await activities(client, ann) == []

    await client.put(f"/api/v1/follows/{ann}", headers=identity_headers(bob))
    await client.put(f"/api/v1/posts/{ann_post}/like", headers=identity_headers(bob))
    assert [a[0] for a in await activities(client, bob)] == ["post_created"]
    assert (await client.delete(f"/api/v1/posts/{ann_post}",
                                headers=identity_headers(ann))).status_code == 204
    assert await activities(client, bob) == []
    assert [a[0] for a in await activities(client, ann)] == ["followed"]


async def test_an_activity_both_followed_and_done_to_me_shows_once(
    client: httpx.AsyncClient, user_session: AsyncSession
) -> None:
    ann, bob = await make_account(user_session), await make_account(user_session)
    await client.put(f"/api/v1/follows/{ann}", headers=identity_headers(bob))
    bob_post = await post(client, bob)
    await client.put(f"/api/v1/posts/{bob_post}/like", headers=identity_headers(ann))
    assert await activities(client, bob) == [("post_liked", "post", bob_post, ann)]
