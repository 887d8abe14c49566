"""Service configuration: one pydantic-settings class, read from RECSYS_* environment variables.

Unknown keyword arguments are rejected (``extra="forbid"``); environment variables are matched by name, and
``python -m service`` warns about a ``RECSYS_*`` variable close to a setting's name (``unknown_variables``).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from recsys.config import CACHE_DIR, resolve
from recsys.net import is_loopback

# RECSYS_* variables that belong to other parts of the project (not service settings)
OTHER_VARIABLES = frozenset(
    {
        "RECSYS_ROOT",
        "RECSYS_UPDATE_SCREENSHOT",
        "RECSYS_CACHE_FAULT",
        "RECSYS_VERIFIED_MANIFEST",
        "RECSYS_DASHBOARD_DATA",
        "RECSYS_DASHBOARD_REPORTS",
        "RECSYS_DASHBOARD_TOKEN",
        "RECSYS_DASHBOARD_TOKEN_FILE",
        "RECSYS_DASHBOARD_PASSWORD_HASH",
        "RECSYS_DASHBOARD_ALLOW_ANONYMOUS",
        "RECSYS_DASHBOARD_HOST",
    }
)


class ServiceSettings(BaseSettings):
    """Everything the HTTP service needs; every field can be set as RECSYS_<NAME> (e.g. RECSYS_PORT=8080)."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_", extra="forbid", frozen=True, hide_input_in_errors=True)

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
    api_keys: SecretStr | None = Field(
        None,
        description="Accepted API keys, comma-separated: each plain or sha256:<hex> (python -m service.security new), "
        "or @/path/to/file (one key per line). Set = every route but /health and the docs needs "
        "Authorization: Bearer <key>.",
    )
    api_keys_file: Path | None = Field(
        None, description="A file of accepted keys, one per line (plain or sha256:<hex>)."
    )
    allow_anonymous: bool = Field(
        False, description="Serve without keys on an address beyond loopback (refused unless this is true)."
    )
    max_body_bytes: int | None = Field(
        2 * 1024 * 1024, ge=0, description="Largest request body in bytes (413 above it); empty = no limit."
    )
    rate_limit_per_s: float = Field(
        0.0,
        ge=0.0,
        description="Requests per second per API key (per client address without keys); 0 = off. Per worker.",
    )
    rate_limit_burst: int = Field(20, ge=1, description="Requests a key may make at once before the rate applies.")
    request_timeout_s: float = Field(
        10.0, ge=0.0, description="A request must complete in this time inside FastAPI (408 slow body, 503); 0 = off."
    )
    keep_alive_s: int = Field(
        5, ge=1, le=3600, description="Idle keep-alive connections close after this many seconds."
    )
    header_timeout_s: float = Field(
        10.0, ge=0.0, description="A connection must send a request's headers within this time; 0 = no limit."
    )
    public_docs: bool = Field(
        True, description="/, /docs, /redoc and /openapi.json need no key (they hold no customer data)."
    )
    cache_verify: Literal["checksum", "size"] = Field(
        "checksum",
        description="Check a cache version before serving it: file sizes and CRC-32 (checksum), or sizes only.",
    )

    @field_validator("cache_dir", mode="after")
    @classmethod
    def _absolute_cache_dir(cls, value: Path) -> Path:
        """Resolve a relative cache dir against the project root, never the working directory."""
        return resolve(value)

    @field_validator("api_keys_file", mode="after")
    @classmethod
    def _absolute_key_file(cls, value: Path | None) -> Path | None:
        """Resolve a relative key file against the project root."""
        return None if value is None else resolve(value)

    @field_validator("max_body_bytes", "api_keys", "api_keys_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        """An empty variable means unset (RECSYS_MAX_BODY_BYTES= : no limit; no keys; no key file)."""
        return None if isinstance(value, str) and not value.strip() else value

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

    @model_validator(mode="after")
    def _keys_parse_and_guard_the_address(self) -> ServiceSettings:
        """Keys must parse; an address beyond loopback needs keys unless RECSYS_ALLOW_ANONYMOUS=true says otherwise."""
        from service.security import KeyRing

        spec = self.api_keys.get_secret_value() if self.api_keys is not None else None
        keys = KeyRing.from_settings(spec, self.api_keys_file)
        if not keys.enabled and not self.allow_anonymous and not is_loopback(self.host):
            raise ValueError(
                f"refusing to serve customer lists on {self.host!r} (beyond the loopback interface) without API keys: "
                "set RECSYS_API_KEYS (or RECSYS_API_KEYS_FILE), or set RECSYS_ALLOW_ANONYMOUS=true to serve "
                "without authentication on purpose (e.g. behind a proxy that authenticates)"
            )
        return self

    def to_env(self) -> dict[str, str]:
        """These settings as RECSYS_* variables, so uvicorn worker processes rebuild the same object."""
        env: dict[str, str] = {}
        for key, val in self.model_dump(mode="json").items():
            if key == "api_keys":
                if self.api_keys is not None:
                    env["RECSYS_API_KEYS"] = self.api_keys.get_secret_value()
                continue
            if val is None:
                text = ""
            elif isinstance(val, list):
                text = json.dumps(val)
            elif isinstance(val, bool):
                text = "true" if val else "false"
            else:
                text = str(val)
            env[f"RECSYS_{key.upper()}"] = text
        return env


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """Warnings for RECSYS_* variables that are no setting of anything here, naming the closest service setting."""
    known = {f"RECSYS_{name.upper()}" for name in ServiceSettings.model_fields}
    out = []
    for name in sorted(environ):
        if not name.startswith("RECSYS_") or name in known or name in OTHER_VARIABLES:
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else ""
        out.append(f"{name} is not a setting of the service and is ignored{hint}")
    return out
