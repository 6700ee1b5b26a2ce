"""Fan-out on write: the timelines behind the newsfeed. Whatever Redis holds, the feed must equal
what fan-out on read from MySQL gives (FeedRepository.newsfeed_page); these tests check that
through trimming, rebuilding, pulled authors and races, with a short timeline so the edges show."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import utcnow
from shared.pagination import Key
from shared.testing.apps import RunningApp, running_app
from shared.testing.identity import identity_headers, new_user_id
from social_service.app import create_app
from social_service.feed.repository import FeedRepository
from social_service.feed.scripts import READY, WHOLE
from social_service.feed.timelines import Timelines, member
from social_service.tests.conftest import SettingsFactory
from social_service.tests.factories import make_account, make_follow, make_post
from social_service.tests.helpers import all_pages

LENGTH = 10
PULL_THRESHOLD = 3


@pytest.fixture(scope="module")
async def short(make_settings: SettingsFactory, redis: Redis) -> AsyncIterator[RunningApp]:
    """The app with 10-post timelines and authors pulled from their third follower on."""
    settings = make_settings(feed_timeline_length=LENGTH, feed_pull_threshold=PULL_THRESHOLD)
    async with running_app(create_app(settings), base_url="http://social") as app:
        yield app


def timelines(app: RunningApp) -> Timelines:
    found: Timelines = app.resources.timelines
    return found


async def timeline_ids(redis: Redis, user_id: int) -> list[int]:
    """The post ids in the user's timeline, newest first (markers left out)."""
    members = await redis.zrange(Timelines.key(user_id), 0, -1, desc=True)
    return [int(str(m).partition(":")[2]) for m in members if ":" in str(m)]


async def feed_ids(client: httpx.AsyncClient, user_id: int, *, limit: int = 4) -> list[int]:
    pages = await all_pages(client, "/api/v1/feed", user_id, limit=limit)
    return [post["id"] for page in pages for post in page]


async def truth(app: RunningApp, user_id: int) -> list[int]:
    """The feed by fan-out on read, straight from MySQL."""
    reads = app.resources.datastores.reads
    rows = await FeedRepository(reads=reads).newsfeed_page(user_id, before=None, limit=10_000)
    return [row["id"] for row in rows]


async def post(client: httpx.AsyncClient, author_id: int) -> int:
    response = await client.post("/api/v1/posts", json={"content": "p"},
                                 headers=identity_headers(author_id))
    assert response.status_code == 201, response.text
    post_id: int = response.json()["id"]
    return post_id


async def follow(client: httpx.AsyncClient, follower: int, followee: int) -> None:
    response = await client.put(f"/api/v1/follows/{followee}", headers=identity_headers(follower))
    assert response.status_code == 204, response.text


async def seeded_reader(session: AsyncSession, *, authors: int, posts_each: int) -> tuple[int, list[int]]:
    reader, author_ids = new_user_id(), [new_user_id() for _ in range(authors)]
    start = utcnow() - timedelta(days=1)
    for n in range(authors * posts_each):
        await make_post(session, author_id=author_ids[n % authors],
                        created_at=start + timedelta(seconds=n // 3))
    for author in author_ids:
        await make_follow(session, follower_id=reader, followee_id=author)
    await session.commit()
    return reader, author_ids


async def test_a_feed_longer_than_the_timeline_goes_on_from_mysql(
    short: RunningApp, session: AsyncSession, redis: Redis
) -> None:
    reader, _ = await seeded_reader(session, authors=3, posts_each=9)
    assert await feed_ids(short.client, reader, limit=4) == await truth(short, reader)
    # The build kept the newest LENGTH posts and READY; nothing says the rest is absent.
    members = await redis.zrange(Timelines.key(reader), 0, -1)
    assert len(members) == LENGTH + 1
    assert members[-1] == READY
    assert WHOLE not in members


async def test_a_timeline_trimmed_by_pushes_stays_right(
    short: RunningApp, session: AsyncSession, redis: Redis
) -> None:
    reader, authors = await seeded_reader(session, authors=2, posts_each=3)
    await feed_ids(short.client, reader)  # built, whole: six posts
    assert await redis.zscore(Timelines.key(reader), WHOLE) is not None
    for n in range(8):
        await post(short.client, authors[n % 2])
    assert await redis.zscore(Timelines.key(reader), WHOLE) is None  # trimmed off first
    assert await feed_ids(short.client, reader, limit=3) == await truth(short, reader)


async def test_a_lost_timeline_is_rebuilt_the_same(
    short: RunningApp, session: AsyncSession, redis: Redis
) -> None:
    reader, _ = await seeded_reader(session, authors=3, posts_each=2)
    before = await feed_ids(short.client, reader)
    await redis.delete(Timelines.key(reader))
    assert await feed_ids(short.client, reader) == before == await truth(short, reader)


async def test_a_post_is_in_the_followers_timeline_when_its_201_arrives(
    short: RunningApp, session: AsyncSession, redis: Redis
) -> None:
    reader, [author] = await seeded_reader(session, authors=1, posts_each=1)
    await feed_ids(short.client, reader)
    post_id = await post(short.client, author)
    assert (await timeline_ids(redis, reader))[0] == post_id


async def test_following_merges_the_authors_posts_in_order(
    short: RunningApp, session: AsyncSession, user_session: AsyncSession
) -> None:
    reader, _ = await seeded_reader(session, authors=2, posts_each=4)
    await feed_ids(short.client, reader)  # built before the follow
    author = await make_account(user_session)
    start = utcnow() - timedelta(days=1, seconds=-1)
    for n in range(6):
        await make_post(session, author_id=author, created_at=start + timedelta(seconds=n))
    await session.commit()
    await follow(short.client, reader, author)
    assert await feed_ids(short.client, reader, limit=5) == await truth(short, reader)


async def test_following_someone_with_more_than_a_timeline_of_posts(
    short: RunningApp, session: AsyncSession, user_session: AsyncSession
) -> None:
    reader, _ = await seeded_reader(session, authors=1, posts_each=2)
    await feed_ids(short.client, reader)  # whole: two posts
    author = await make_account(user_session)
    start = utcnow() - timedelta(days=2)
    for n in range(LENGTH + 5):
        await make_post(session, author_id=author, created_at=start + timedelta(minutes=n))
    await session.commit()
    await follow(short.client, reader, author)
    assert await feed_ids(short.client, reader, limit=4) == await truth(short, reader)


async def test_a_follow_voids_a_build_that_read_mysql_before_it(
    short: RunningApp, session: AsyncSession, redis: Redis
) -> None:
    reader, _ = await seeded_reader(session, authors=1, posts_each=2)
    lines = timelines(short)
    generation = await lines.generation(reader)
    await lines.merge_author(reader, new_user_id())  # a follow lands mid-build
    assert not await lines.finish_build(reader, generation, [Key(utcnow(), 1)])
    assert await redis.exists(Timelines.key(reader)) == 0
    assert await feed_ids(short.client, reader) == await truth(short, reader)


async def test_an_author_past_the_threshold_is_pulled_for_good(
    short: RunningApp, session: AsyncSession, user_session: AsyncSession, redis: Redis
) -> None:
    star = await make_account(user_session)
    fans = [new_user_id() for _ in range(PULL_THRESHOLD)]
    early = await post(short.client, star)
    for fan in fans:
        await follow(short.client, fan, star)
        await feed_ids(short.client, fan)
    pulled = await post(short.client, star)
    in_timeline = await timeline_ids(redis, fans[0])
    assert early in in_timeline  # pushed: the author was not pulled yet
    assert pulled not in in_timeline
    for fan in fans:
        assert await feed_ids(short.client, fan) == [pulled, early] == await truth(short, fan)
    # Fewer followers again, and still pulled: its posts were never pushed, so they must be.
    response = await short.client.delete(f"/api/v1/follows/{star}",
                                         headers=identity_headers(fans[-1]))
    assert response.status_code == 204
    later = await post(short.client, star)
    assert await feed_ids(short.client, fans[0]) == [later, pulled, early]


async def test_pulled_and_pushed_posts_merge_into_one_order(
    short: RunningApp, session: AsyncSession, user_session: AsyncSession
) -> None:
    star = await make_account(user_session)
    for _ in range(PULL_THRESHOLD):
        await follow(short.client, new_user_id(), star)
    reader, [friend] = await seeded_reader(session, authors=1, posts_each=3)
    await follow(short.client, reader, star)
    for n in range(6):
        await post(short.client, star if n % 2 else friend)
    ids = await feed_ids(short.client, reader, limit=2)
    assert ids == await truth(short, reader)
    assert len(ids) == len(set(ids)) == 9


async def test_deleted_posts_leave_the_timeline_as_they_are_read(
    short: RunningApp, session: AsyncSession, redis: Redis
) -> None:
    reader, [author] = await seeded_reader(session, authors=1, posts_each=1)
    first = await post(short.client, author)
    await feed_ids(short.client, reader)
    response = await short.client.delete(f"/api/v1/posts/{first}", headers=identity_headers(author))
    assert response.status_code == 204
    await feed_ids(short.client, reader)
    assert first not in await timeline_ids(redis, reader)


async def test_a_key_naming_another_row_now_is_dropped(
    short: RunningApp, session: AsyncSession, redis: Redis
) -> None:
    """As after a database restore: the id exists, but the post under it is not the one pushed."""
    reader, _ = await seeded_reader(session, authors=1, posts_each=3)
    ids = await feed_ids(short.client, reader)
    impostor = Key(utcnow() + timedelta(hours=1), ids[-1])
    await redis.zadd(Timelines.key(reader), {member(impostor): 0})
    assert await feed_ids(short.client, reader) == ids == await truth(short, reader)
    assert await timeline_ids(redis, reader) == ids
