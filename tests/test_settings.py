"""Every setting is documented in the README, with its environment variable and default."""

from __future__ import annotations

from pathlib import Path

from indexer.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_readme_table() -> None:
    for name in Settings.model_fields:
        assert f"`PARACITE_{name.upper()}`" in README, name


def test_environment_overrides_and_origins_split(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PARACITE_PORT", "9123")
    monkeypatch.setenv("PARACITE_CORS_ORIGINS", "http://a.example, http://b.example")
    settings = Settings()
    assert settings.port == 9123
    assert settings.cors_origins == ["http://a.example", "http://b.example"]
    assert settings.with_overrides(port=None, host="0.0.0.0").port == 9123
