"""Domain errors raised by services; only the API layer turns them into HTTP responses."""


class NotFoundError(Exception):
    """The requested entity does not exist."""

    def __init__(self, entity: str, entity_id: object) -> None:
        super().__init__(f"{entity} {entity_id} not found")
        self.entity = entity
        self.entity_id = entity_id
