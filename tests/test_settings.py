from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cvtools.settings import PROJECT_ROOT, SettingsError, load_settings


def test_config_file_then_env_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "config.py"
    cfg.write_text("port = 9001\ntest_size = 0.3\nbatch_size = 8\n")
    s = load_settings(cfg, dataset_dir=str(tmp_path / "d"))
    assert (s.port, s.test_size, s.batch_size) == (9001, 0.3, 8)
    monkeypatch.setenv("CVTOOLS_PORT", "9002")
    monkeypatch.setenv("CVTOOLS_PUBLIC_DIRS", f'["{tmp_path}"]')
    s = load_settings(cfg, dataset_dir=str(tmp_path / "d"))
    assert s.port == 9002 and s.public_dirs == [tmp_path.resolve()]
    assert load_settings(cfg, port=9003, dataset_dir=str(tmp_path / "d")).port == 9003


def test_public_dirs_default_to_dataset(tmp_path: Path) -> None:
    s = load_settings(None, dataset_dir=str(tmp_path / "d"))
    assert s.public_dirs == [(tmp_path / "d").resolve()]


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("CVTOOLS_TEST_SIZE", "1.5", "test_size must be between 0 and 1"),
        ("CVTOOLS_BATCH_SIZE", "0", "batch_size must be between 1 and 1024"),
        ("CVTOOLS_PORT", "70000", "port must be between 0 and 65535"),
        ("CVTOOLS_PORT", "abc", "port"),
        ("CVTOOLS_SIMILARITY_SPACE", "pixels", "similarity_space"),
        ("CVTOOLS_HOST", "0.0.0.0", "auth_token must be set"),
        ("CVTOOLS_AUTH_TOKEN", "x", "auth_token must be at least 16 characters"),
        ("CVTOOLS_MAX_IMAGE_PIXELS", "10", "max_image_pixels"),
    ],
)
def test_invalid_settings_name_the_setting(monkeypatch: pytest.MonkeyPatch, env: str, value: str, message: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as info:
        load_settings(None)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_run_py_refuses_bad_setting_with_one_line(tmp_path: Path) -> None:
    env = {"CVTOOLS_TEST_SIZE": "2", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "run.py"), "--dataset", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "CV Tools cannot start: test_size must be between 0 and 1"


def test_non_loopback_host_needs_token(tmp_path: Path) -> None:
    with pytest.raises(SettingsError):
        load_settings(None, host="0.0.0.0", dataset_dir=str(tmp_path))
    assert (
        load_settings(None, host="0.0.0.0", auth_token="s3cret-s3cret-s3cret", dataset_dir=str(tmp_path)).auth_token
        == "s3cret-s3cret-s3cret"
    )
