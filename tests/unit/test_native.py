"""Compiled copies of the hot modules: used only when built from the current source."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from citywatch import native as _native


def test_in_use_exactly_when_built_for_these_sources() -> None:
    built = _native.is_built(_native.build_dir())
    wanted = os.environ.get("CITYWATCH_NATIVE", "1") != "0"
    # ingest.decoders' __init__ imports its modules: they too must be the compiled ones.
    for module in ("processors.engine", "ingest.decode", "ingest.decoders.senml"):
        assert _native.active(module) == (built and wanted), module
    if os.environ.get("CI") and wanted:
        # deploy/bootstrap.sh builds them: CI must test the compiled modules, not skip them.
        assert built, "citywatch.native not built: see /tmp/citywatch-native-build.log"


def test_an_edited_module_changes_the_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stale build is never imported because its directory is named by this digest.
    for rel in _native.MODULES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(_native.ROOT / rel, tmp_path / rel)
    monkeypatch.setattr(_native, "ROOT", tmp_path)
    before = _native.digest()
    assert before == _native.digest()
    seen = {before}
    for rel in ("processors/rules/bin/bin_overflow.py", "ingest/decoders/senml.py"):
        target = tmp_path / rel
        target.write_text(target.read_text() + "\n# edited\n")
        seen.add(_native.digest())
    assert len(seen) == 3


def test_cache_dir_follows_the_settings_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CITYWATCH_CACHE_DIR", str(tmp_path))
    assert _native.build_dir().parent == tmp_path / "native"


def test_alert_event_json_has_every_set_field() -> None:
    # to_json once read __slots__, which the compiled class lacks: the processor crashed on
    # its first alert while every unit test passed.
    import orjson

    from processors.alerts import AlertEvent

    ev = AlertEvent(
        "a1", "bin_overflow", "bin-1", "device", "bin", "n", "warning", "raised", 5, 6, "m"
    )
    got = orjson.loads(ev.to_json())
    assert got["alert_id"] == "a1" and got["ts"] == 6 and got["message"] == "m"
    assert "value" not in got  # None fields are left out
    assert len(got) == 11
