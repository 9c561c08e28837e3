"""The items API: thin handlers that validate input and hand off to the service."""

from fastapi import APIRouter, status

from app.api.access.{{ cookiecutter.auth }} import ITEMS_WRITE, PROBLEMS, cacheable, requires
from app.api.deps import ItemServiceDep
from app.api.params import DEFAULT_LIMIT, IdPath, Limit, Offset
from app.problems import problem_responses
from app.schemas.item import ItemCreate, ItemPage, ItemRead, ItemUpdate

router = APIRouter(
    prefix="/items",
    tags=["items"],
    dependencies=requires(),
    responses=problem_responses(400, 422, 500, 503) | PROBLEMS,  # 400: an encoded '/' in the path
)
WRITE = requires(ITEMS_WRITE)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=WRITE,
    responses=problem_responses(400, 409, 413),
)
async def create_item(data: ItemCreate, service: ItemServiceDep) -> ItemRead:
    """Create an item."""
    return await service.create(data)


@router.get("")
@cacheable("items")  # the same page for every caller; item writes drop it
async def list_items(
    service: ItemServiceDep,
    offset: Offset = 0,
    limit: Limit = DEFAULT_LIMIT,
) -> ItemPage:
    """List items, newest first."""
    return await service.list(offset=offset, limit=limit)


@router.get("/{item_id}", responses=problem_responses(404))
@cacheable("items")
async def get_item(item_id: IdPath, service: ItemServiceDep) -> ItemRead:
    """Return one item, or 404."""
    return await service.get(item_id)


@router.patch("/{item_id}", dependencies=WRITE, responses=problem_responses(400, 404, 409, 413))
async def update_item(item_id: IdPath, data: ItemUpdate, service: ItemServiceDep) -> ItemRead:
    """Change some fields of an item, or 404."""
    return await service.update(item_id, data)


@router.delete(
    "/{item_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=WRITE,
    responses=problem_responses(404, 409),  # 409: a row of another table refers to it
)
async def delete_item(item_id: IdPath, service: ItemServiceDep) -> None:
    """Delete an item, or 404; 409 while something refers to it (a foreign key)."""
    await service.delete(item_id)
