"""One validated, immutable Settings object: config.py < CVTOOLS_* environment < CLI flags."""

from __future__ import annotations

import importlib.util
import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "config.py"


# Allowed ranges, inclusive (None: no upper bound); EXCLUSIVE ones exclude both ends.
RANGES: dict[str, tuple[float, float | None]] = {
    "test_size": (0, 1),
    "batch_size": (1, 1024),
    "max_equal_distance": (0, 2),
    "port": (0, 65535),
    "max_upload_mb": (1, None),
    "max_image_pixels": (64 * 64, None),
    "unknown_false_rejection": (0.001, 0.5),
    "anomaly_folds": (2, 20),
    "phash_max_bits": (0, 32),
    "grab_workers": (1, 64),
    "grab_per_host": (1, 64),
    "grab_min_side": (1, 4096),
}
EXCLUSIVE = {"test_size"}
MIN_TOKEN_LENGTH = 16


class SettingsError(ValueError):
    """An invalid setting; the message is one line naming it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CVTOOLS_", frozen=True, extra="ignore")

    dataset_dir: Path = Path("./dataset")
    neuronet: str = "facebook/convnextv2-base-22k-224"
    test_size: float = 0.2
    batch_size: int = 16
    max_equal_distance: float = 0.3
    host: str = "127.0.0.1"
    port: int = 8000
    public_dirs: list[Path] = []
    auth_token: str = ""
    allow_private_urls: bool = False
    max_upload_mb: int = 200
    max_image_pixels: int = 50_000_000
    similarity_space: Literal["features", "logits"] = "features"
    train_mode: Literal["auto", "head", "finetune"] = "auto"
    preload_model: bool = True
    inference_runtime: Literal["auto", "onnxruntime", "torch"] = "auto"
    unknown_detection: bool = True
    unknown_false_rejection: float = 0.05
    cv_unknown: bool = False
    anomaly_method: Literal["cross_validation", "production"] = "cross_validation"
    anomaly_folds: int = 5
    label_mode: Literal["single", "multi"] = "single"
    phash_max_bits: int = 6
    grab_google_url: str = "https://www.google.com/wml/search"
    grab_bing_url: str = "https://www.bing.com/images/async"
    grab_duckduckgo_url: str = "https://duckduckgo.com/"
    grab_openverse_url: str = "https://api.openverse.org/v1/images/"
    grab_google_cse_url: str = "https://www.googleapis.com/customsearch/v1"
    google_cse_key: str = ""
    google_cse_cx: str = ""
    grab_brave_url: str = "https://api.search.brave.com/res/v1/images/search"
    brave_api_key: str = ""
    grab_workers: int = 12
    grab_per_host: int = 2
    grab_min_side: int = 50

    @field_validator(*RANGES)
    @classmethod
    def _in_range(cls, v: float, info: Any) -> float:
        low, high = RANGES[info.field_name]
        ok = (low < v < high) if info.field_name in EXCLUSIVE else (low <= v and (high is None or v <= high))
        if not ok:
            raise ValueError(
                f"{info.field_name} must be at least {low:g}"
                if high is None
                else f"{info.field_name} must be between {low:g} and {high:g}"
            )
        return v

    @field_validator(
        "grab_google_url",
        "grab_bing_url",
        "grab_duckduckgo_url",
        "grab_openverse_url",
        "grab_google_cse_url",
        "grab_brave_url",
    )
    @classmethod
    def _url(cls, v: str, info: Any) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"{info.field_name} must be an http(s) URL")
        return v

    @field_validator("neuronet")
    @classmethod
    def _neuronet(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("neuronet must name a model id or a folder")
        return v.strip()

    @model_validator(mode="after")
    def _resolve(self) -> Settings:
        object.__setattr__(self, "dataset_dir", self.dataset_dir.expanduser().resolve())
        dirs = [p.expanduser().resolve() for p in self.public_dirs] or [self.dataset_dir]
        object.__setattr__(self, "public_dirs", dirs)
        if not is_loopback(self.host) and not self.auth_token:
            raise ValueError(f"auth_token must be set when host is {self.host!r} (not this computer only)")
        if self.auth_token and len(self.auth_token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"auth_token must be at least {MIN_TOKEN_LENGTH} characters long (a short one is guessed)")
        return self

    @property
    def state_dir(self) -> Path:
        return self.dataset_dir / ".cvtools"

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)


class _ConfigFileSource(PydanticBaseSettingsSource):
    """Values from the user-edited config.py (plain Python assignments)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = self.path
        if path is None or not path.is_file():
            return {}
        spec = importlib.util.spec_from_file_location("_cvtools_user_config", path)
        if spec is None or spec.loader is None:
            return {}
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return {name: getattr(module, name) for name in self.settings_cls.model_fields if hasattr(module, name)}


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(config: Path | None = DEFAULT_CONFIG, **overrides: Any) -> Settings:
    """Build Settings; raise SettingsError with one clear line on any invalid value."""

    class _FromFile(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, _ConfigFileSource(settings_cls, config))

    try:
        return _FromFile(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        name = ".".join(str(p) for p in err["loc"]) or "settings"
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise SettingsError(msg if not err["loc"] or name in msg else f"{name}: {msg}") from None
    except (OSError, SyntaxError, NameError, TypeError, AttributeError) as exc:
        raise SettingsError(f"config.py: {exc}") from None
