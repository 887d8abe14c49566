"""Service configuration: one pydantic-settings class, read from RECSYS_* environment variables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from recsys.config import CACHE_DIR, resolve


class ServiceSettings(BaseSettings):
    """Everything the HTTP service needs; every field can be set as RECSYS_<NAME> (e.g. RECSYS_PORT=8080)."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_", extra="ignore", frozen=True)

    cache_dir: Path = Field(
        CACHE_DIR, description="Cache artifact directory (relative paths resolve against the project root)."
    )
    host: str = Field("127.0.0.1", description="Interface to bind; the default keeps the service local.")
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes; they share the memory-mapped cache.")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Allowed CORS origins (comma-separated or JSON list); empty = no CORS."
    )
    cors_allow_credentials: bool = False
    reload_interval_s: float = Field(
        2.0,
        ge=0.0,
        le=3600.0,
        description="Seconds between manifest.json stat polls; 0 disables polling (SIGHUP still works).",
    )
    fast_lane: bool = Field(
        True,
        description="Answer well-formed GET /recommend/{id}[?n=k] in a pure-ASGI layer before FastAPI routing "
        "(same bytes; everything else, errors included, goes through FastAPI). false = every request through FastAPI.",
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    access_log: bool = False

    @field_validator("cache_dir", mode="after")
    @classmethod
    def _absolute_cache_dir(cls, value: Path) -> Path:
        """Resolve a relative cache dir against the project root, never the working directory."""
        return resolve(value)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        """Accept `a,b` as well as a JSON list (`["a","b"]`) from the environment."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> ServiceSettings:
        """Browsers reject `*` with credentials; refuse the combination instead of silently misbehaving."""
        if self.cors_allow_credentials and "*" in self.cors_origins:
            raise ValueError(
                "RECSYS_CORS_ORIGINS='*' cannot be combined with RECSYS_CORS_ALLOW_CREDENTIALS=true; "
                "list the exact origins instead"
            )
        return self

    def to_env(self) -> dict[str, str]:
        """These settings as RECSYS_* variables, so uvicorn worker processes rebuild the same object."""
        env: dict[str, str] = {}
        for key, val in self.model_dump(mode="json").items():
            if isinstance(val, list):
                text = json.dumps(val)
            elif isinstance(val, bool):
                text = "true" if val else "false"
            else:
                text = str(val)
            env[f"RECSYS_{key.upper()}"] = text
        return env
