"""The statements of products/repository.py against real MariaDB: the list's keyset order
(ties on created_at included), what is shown, and what the settler may take."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from product_service.dependencies import Resources
from product_service.products.repository import ProductsRepository
from product_service.tests.products.factories import make_product
from shared.clock import utcnow
from shared.pagination import Key
from shared.testing.identity import new_user_id


async def test_pages_are_newest_first_with_ties_on_created_at_ordered_by_id(
    resources: Resources, session: AsyncSession
) -> None:
    seller = new_user_id()
    # In the future, so they head the list whatever other tests made.
    at = utcnow() + timedelta(days=3650)
    tied = [await make_product(session, seller_id=seller, created_at=at) for _ in range(3)]
    newest = await make_product(session, seller_id=seller, created_at=at + timedelta(seconds=1))
    await make_product(session, seller_id=seller, created_at=at + timedelta(seconds=2),
                       status="pending")
    await make_product(session, seller_id=seller, created_at=at + timedelta(seconds=3),
                       status="deleted")
    await session.commit()
    products = ProductsRepository(reads=resources.datastores.reads)

    first = await products.page(kind=None, before=None, limit=2)
    assert [row["id"] for row in first] == [newest.id, tied[2].id, tied[1].id]
    rest = await products.page(kind=None, before=Key(at, tied[1].id), limit=5)
    assert rest[0]["id"] == tied[0].id
    assert all(row["created_at"] < at for row in rest[1:])


async def test_the_kind_filter_and_only_active_products(
    resources: Resources, session: AsyncSession
) -> None:
    seller = new_user_id()
    at = utcnow() + timedelta(days=7300)
    general = await make_product(session, seller_id=seller, created_at=at)
    preorder = await make_product(session, seller_id=seller, kind="preorder",
                                  sale_opens_at=at, created_at=at)
    await make_product(session, seller_id=seller, kind="preorder", sale_opens_at=at,
                       created_at=at + timedelta(seconds=1), status="deleted")
    await session.commit()
    products = ProductsRepository(reads=resources.datastores.reads)
    preorders = await products.page(kind="preorder", before=None, limit=1)
    assert preorders[0]["id"] == preorder.id
    assert {row["kind"] for row in preorders} == {"preorder"}
    generals = await products.page(kind="general", before=None, limit=1)
    assert generals[0]["id"] == general.id
    assert {row["kind"] for row in generals} == {"general"}
    assert await products.get_active(preorder.id) is not None


async def test_the_settler_takes_only_old_pending_rows_another_settler_does_not_hold(
    resources: Resources, session: AsyncSession
) -> None:
    # The app's own sessions: READ COMMITTED, as every replica's settler runs.
    sessions = resources.datastores.sessionmaker
    seller = new_user_id()
    # Older than anything other tests leave, so these two come first.
    old = utcnow() - timedelta(days=3650)
    first = await make_product(session, seller_id=seller, status="pending", created_at=old)
    second = await make_product(session, seller_id=seller, status="pending",
                                created_at=old + timedelta(seconds=1))
    await session.commit()
    cutoff = old + timedelta(seconds=2)
    async with sessions() as one, one.begin(), sessions() as other, other.begin():
        taken = await ProductsRepository(session=one).lock_one_stale_pending(
            written_before=cutoff)
        left = await ProductsRepository(session=other).lock_one_stale_pending(
            written_before=cutoff)
        assert {taken, left} == {first.id, second.id}
        assert left is not None
        assert await ProductsRepository(session=other).delete_pending(left)
        assert not await ProductsRepository(session=other).delete_pending(left)
    async with sessions() as again, again.begin():
        assert await ProductsRepository(session=again).lock_one_stale_pending(
            written_before=cutoff) == taken
        assert taken is not None
        await ProductsRepository(session=again).delete_pending(taken)
