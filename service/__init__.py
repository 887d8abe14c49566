"""HTTP service over the shared audience cache (`python -m service`; see service.main.run)."""

from __future__ import annotations

__all__ = ["create_app", "run", "ServiceSettings"]


def __getattr__(name: str):  # lazy: `import service` stays cheap and never opens the cache
    """Expose create_app, run and ServiceSettings without importing FastAPI at package import."""
    if name == "create_app":
        from service.app import create_app

        return create_app
    if name == "run":
        from service.main import run

        return run
    if name == "ServiceSettings":
        from service.settings import ServiceSettings

        return ServiceSettings
    raise AttributeError(f"module 'service' has no attribute {name!r}")
