"""The background backend: tasks run in the API process, on a runner the app owns."""
