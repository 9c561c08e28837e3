"""The background backend: tasks run in the API process (FastAPI BackgroundTasks)."""
