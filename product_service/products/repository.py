"""Every SQL statement of products: plain reads on a ReadSession (no transaction), changes on
a session. Reads are Core statements built once with bindparam(); rows are plain mappings."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import bindparam, delete, insert, select, update

from product_service.products.models import Product
from shared.pagination import Key, key_params, older_than
from shared.repository import Repository, execute_counted, execute_insert

Row = dict[str, Any]

PRODUCT_COLUMNS = (Product.id, Product.seller_id, Product.name, Product.description,
                   Product.price, Product.kind, Product.sale_opens_at, Product.sale_closes_at,
                   Product.limit_per_user, Product.created_at, Product.updated_at)
NEWEST_FIRST = (Product.created_at.desc(), Product.id.desc())

ACTIVE_PRODUCT_BY_ID = select(*PRODUCT_COLUMNS).where(
    Product.id == bindparam("product_id"), Product.status == "active")


def _page(*, of_kind: bool, after_key: bool) -> Any:
    query = select(*PRODUCT_COLUMNS).where(Product.status == "active")
    if of_kind:
        query = query.where(Product.kind == bindparam("kind"))
    if after_key:
        query = query.where(older_than(Product.created_at, Product.id))
    return query.order_by(*NEWEST_FIRST).limit(bindparam("limit"))


# (one kind?, past a cursor?) -> the statement.
PRODUCT_PAGES = {(of_kind, after_key): _page(of_kind=of_kind, after_key=after_key)
                 for of_kind in (False, True) for after_key in (False, True)}


class ProductsRepository(Repository):
    # Reads, outside any transaction.

    async def get_active(self, product_id: int) -> Row | None:
        return (await self.reads.execute(ACTIVE_PRODUCT_BY_ID, {"product_id": product_id})).first()

    async def page(self, *, kind: str | None, before: Key | None, limit: int) -> list[Row]:
        """`limit` + 1 rows at most: the extra one says whether a next page exists."""
        statement = PRODUCT_PAGES[(kind is not None, before is not None)]
        parameters: dict[str, Any] = {"kind": kind, "limit": limit + 1, **key_params(before)}
        return (await self.reads.execute(statement, parameters)).all()

    # Writes.

    async def insert_pending(self, *, seller_id: int, name: str, description: str, price: int,
                             kind: str, sale_opens_at: datetime | None,
                             sale_closes_at: datetime | None, limit_per_user: int | None,
                             now: datetime) -> int:
        return await execute_insert(self.session, insert(Product).values(
            seller_id=seller_id, name=name, description=description, price=price, kind=kind,
            sale_opens_at=sale_opens_at, sale_closes_at=sale_closes_at,
            limit_per_user=limit_per_user, status="pending", created_at=now, updated_at=now))

    async def activate(self, product_id: int) -> bool:
        """False if the row is no longer pending (the settler removed it meanwhile)."""
        return await execute_counted(self.session, update(Product).where(
            Product.id == product_id, Product.status == "pending").values(status="active")) == 1

    async def delete_pending(self, product_id: int) -> bool:
        return await execute_counted(self.session, delete(Product).where(
            Product.id == product_id, Product.status == "pending")) == 1

    async def lock_active(self, product_id: int) -> Row | None:
        """The product, locked for this transaction's change; None unless it is active."""
        row = (await self.session.execute(
            select(*PRODUCT_COLUMNS).where(Product.id == product_id, Product.status == "active")
            .with_for_update())).first()
        return None if row is None else dict(row._mapping)

    async def update(self, product_id: int, changes: dict[str, Any], *, now: datetime) -> None:
        await self.session.execute(
            update(Product).where(Product.id == product_id).values(**changes, updated_at=now))

    async def mark_deleted(self, product_id: int, *, now: datetime) -> None:
        await self.session.execute(
            update(Product).where(Product.id == product_id)
            .values(status="deleted", updated_at=now))

    async def lock_one_stale_pending(self, *, written_before: datetime) -> int | None:
        """A product left pending since before `written_before`, locked; rows another replica's
        settler holds are skipped."""
        # No ORDER BY: MariaDB may sort the matches with a filesort, locking every one of
        # them before LIMIT applies, and a second settler would then find all of them taken.
        return cast(int | None, await self.session.scalar(
            select(Product.id)
            .where(Product.status == "pending", Product.created_at < written_before)
            .limit(1).with_for_update(skip_locked=True)))
