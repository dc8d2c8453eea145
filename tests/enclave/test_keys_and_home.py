"""Keys are envelope-encrypted, rotate without changing data keys, and never show themselves."""

from __future__ import annotations

import stat

import pytest

from enclave.config import Settings, load_settings
from enclave.errors import ConfigError, NotInitialisedError
from enclave.home import init_home
from enclave.keys import KeyDestroyedError, KeyError_, KeyStore


def test_home_layout_and_permissions(settings: Settings) -> None:
    for name in ("keys", "quarantine", "audit"):
        mode = stat.S_IMODE((settings.home / name).stat().st_mode)
        assert mode == 0o700, name
    assert stat.S_IMODE((settings.home / "state.db").stat().st_mode) == 0o600
    for wrapped in settings.keys_dir.glob("*.wrapped"):
        assert stat.S_IMODE(wrapped.stat().st_mode) == 0o600


def test_init_is_idempotent(settings: Settings) -> None:
    stage1 = KeyStore.for_home(settings.keys_dir).stage1_key().reveal()
    again = init_home(settings, admin_username="alice", admin_password="x" * 20)
    assert not again.created
    assert again.keys_created == []
    assert again.admin_created is None
    assert KeyStore.for_home(settings.keys_dir).stage1_key().reveal() == stage1


def test_rotation_keeps_data_keys(settings: Settings) -> None:
    store = KeyStore.for_home(settings.keys_dir)
    before = store.stage1_key().reveal()
    old_blob = (settings.keys_dir / "stage1.wrapped").read_bytes()
    store.rotate_master()
    assert (settings.keys_dir / "stage1.wrapped").read_bytes() != old_blob
    assert store.stage1_key().reveal() == before


def test_tampered_wrapped_key_fails_closed(settings: Settings) -> None:
    path = settings.keys_dir / "escrow.wrapped"
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(KeyError_, match="failed authentication"):
        KeyStore.for_home(settings.keys_dir).escrow_key()


def test_destroyed_key_cannot_be_unwrapped(settings: Settings, tmp_path) -> None:
    store = KeyStore.for_home(settings.keys_dir)
    target = tmp_path / "project.wrapped"
    store.store_wrapped("project:P1", b"k" * 32, path=target)
    assert store.load("project:P1", path=target).reveal() == b"k" * 32
    store.destroy("project:P1", path=target, when="2026-11-22")
    with pytest.raises(KeyDestroyedError):
        store.load("project:P1", path=target)


def test_key_material_never_in_repr(settings: Settings) -> None:
    key = KeyStore.for_home(settings.keys_dir).stage1_key()
    raw = key.reveal()
    for text in (repr(key), str(key), f"{key}"):
        assert raw.hex() not in text
        assert "redacted" in text


def test_uninitialised_home_and_bad_settings(tmp_path, monkeypatch) -> None:
    s = load_settings(tmp_path / "nowhere")
    with pytest.raises(NotInitialisedError, match="enclave init"):
        s.require_initialised()
    home = tmp_path / "h"
    home.mkdir()
    (home / "enclave.toml").write_text("[enclave]\nnot_a_setting = 1\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(home)
    monkeypatch.setenv("ENCLAVE_DATABASE_URL", "sqlite:////tmp/elsewhere.db")
    (home / "enclave.toml").write_text("[enclave]\n")
    assert load_settings(home).database_url == "sqlite:////tmp/elsewhere.db"
