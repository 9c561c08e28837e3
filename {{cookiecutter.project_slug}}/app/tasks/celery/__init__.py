"""The celery backend: the Celery app, its workers, beat and the publishing queue."""
