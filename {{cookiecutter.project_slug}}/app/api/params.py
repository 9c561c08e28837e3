"""Path and query parameters every resource's router shares: an id, and a page's bounds."""

from typing import Annotated

from fastapi import Path, Query

from app.schemas.resource import ID_MAX, LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT, LIST_MAX_OFFSET

# An id past what the column holds is a 422, not a database error (`app.schemas.resource`).
IdPath = Annotated[int, Path(ge=1, le=ID_MAX)]
Offset = Annotated[int, Query(ge=0, le=LIST_MAX_OFFSET)]
Limit = Annotated[int, Query(ge=1, le=LIST_MAX_LIMIT)]
DEFAULT_LIMIT = LIST_DEFAULT_LIMIT
