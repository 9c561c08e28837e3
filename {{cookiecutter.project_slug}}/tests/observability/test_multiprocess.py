"""Multiprocess mode refuses settings prometheus-client would not follow (it would lose counts)."""

from pathlib import Path

import pytest

from app.config import Settings
from app.observability.metrics import open_metrics


def test_a_directory_only_in_the_settings_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    settings = Settings(prometheus_multiproc_dir=tmp_path)  # as if read from .env alone

    with pytest.raises(RuntimeError, match="environment"), open_metrics(settings):
        pass


def test_a_directory_that_does_not_exist_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "missing"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(missing))

    with (
        pytest.raises(RuntimeError, match="not a directory"),
        open_metrics(Settings(prometheus_multiproc_dir=missing)),
    ):
        pass
