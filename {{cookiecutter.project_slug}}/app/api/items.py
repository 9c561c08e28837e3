"""The items API: thin handlers that validate input and hand off to the service."""

from typing import Annotated

from fastapi import APIRouter, Query, status

from app.api.deps import ItemServiceDep
from app.schemas.item import ItemCreate, ItemPage, ItemRead, ItemUpdate

router = APIRouter(prefix="/items", tags=["items"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_item(data: ItemCreate, service: ItemServiceDep) -> ItemRead:
    """Create an item."""
    return await service.create(data)


@router.get("")
async def list_items(
    service: ItemServiceDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> ItemPage:
    """List items, newest first."""
    return await service.list(offset=offset, limit=limit)


@router.get("/{item_id}")
async def get_item(item_id: int, service: ItemServiceDep) -> ItemRead:
    """Return one item, or 404."""
    return await service.get(item_id)


@router.patch("/{item_id}")
async def update_item(item_id: int, data: ItemUpdate, service: ItemServiceDep) -> ItemRead:
    """Change some fields of an item, or 404."""
    return await service.update(item_id, data)


@router.delete("/{item_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_item(item_id: int, service: ItemServiceDep) -> None:
    """Delete an item, or 404."""
    await service.delete(item_id)
