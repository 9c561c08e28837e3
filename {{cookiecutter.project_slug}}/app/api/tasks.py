"""The tasks API (written by the tasks work; this router is replaced there)."""

from fastapi import APIRouter

router = APIRouter(prefix="/tasks", tags=["tasks"])
