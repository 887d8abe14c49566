"""API keys, body-size limit, rate limit and deadline (service.security), in process; real-server cases in
tests/test_service_uvicorn.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.app import create_app
from service.main import EXIT_BAD_CONFIG, main
from service.security import KeyRing, TokenBucket, bearer_token, hash_key, parse_key
from service.security import main as security_main
from service.settings import ServiceSettings, is_loopback, unknown_variables

from conftest import TinyCache

KEY = "k3y-for-tests-0123456789abcdef"
OTHER_KEY = "another-test-key-9876543210"
GOOD = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def keyed(int_cache: TinyCache, make_client: Callable[..., TestClient]) -> Iterator[TestClient]:
    """A client of an app that accepts KEY (plain) and OTHER_KEY (configured as its sha256 form)."""
    with make_client(int_cache.dir, api_keys=f"{KEY}, {hash_key(OTHER_KEY)}") as c:
        yield c


# ---------------------------------------------------------------------------------------------------
# keys
# ---------------------------------------------------------------------------------------------------


def test_a_request_without_a_key_gets_401_with_a_bearer_challenge(keyed: TestClient) -> None:
    r = keyed.get("/recommend/101")
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="recsys"'
    assert r.json() == {"detail": "an API key is required: send it as Authorization: Bearer <key>"}
    wrong = keyed.get("/recommend/101", headers={"Authorization": "Bearer not-the-key-at-all-000"})
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
    assert wrong.json() == {"detail": "the API key is not valid"}
    basic = keyed.get("/recommend/101", headers={"Authorization": f"Basic {KEY}"})
    assert basic.status_code == 401


def test_good_keys_plain_or_hashed_get_200(keyed: TestClient) -> None:
    assert keyed.get("/recommend/101", headers=GOOD).status_code == 200
    assert keyed.get("/recommend/101", headers={"Authorization": f"bearer {OTHER_KEY}"}).status_code == 200
    body = keyed.post("/recommend/batch", json={"product_ids": [101, 102]}, headers=GOOD)
    assert body.status_code == 200 and body.json()["count"] == 2
    assert keyed.get("/products/sample?n=2", headers=GOOD).status_code == 200


def test_every_route_but_health_and_the_docs_needs_a_key(keyed: TestClient) -> None:
    for path in ("/health", "/", "/docs", "/redoc", "/openapi.json", "/docs/static/swagger-ui.css"):
        assert keyed.get(path).status_code == 200, path
    for method, path in (("GET", "/products/sample"), ("POST", "/recommend/batch"), ("GET", "/nope")):
        assert keyed.request(method, path).status_code == 401, path


def test_a_route_added_later_inherits_the_key_check(int_cache: TinyCache) -> None:
    app = create_app(ServiceSettings(cache_dir=int_cache.dir, reload_interval_s=0.0, api_keys=KEY))

    @app.get("/campaigns")
    async def campaigns() -> dict[str, str]:
        return {"ok": "yes"}

    with TestClient(app) as c:
        assert c.get("/campaigns").status_code == 401
        assert c.get("/campaigns", headers=GOOD).json() == {"ok": "yes"}


def test_private_docs_need_a_key_too(int_cache: TinyCache, make_client: Callable[..., TestClient]) -> None:
    with make_client(int_cache.dir, api_keys=KEY, public_docs=False) as c:
        assert c.get("/docs").status_code == 401 and c.get("/openapi.json").status_code == 401
        assert c.get("/openapi.json", headers=GOOD).status_code == 200
        assert c.get("/health").status_code == 200


def test_openapi_declares_the_bearer_scheme_on_protected_operations(keyed: TestClient) -> None:
    schema = keyed.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert schema["paths"]["/recommend/{product_id}"]["get"]["security"] == [{"apiKey": []}]
    assert "401" in schema["paths"]["/recommend/batch"]["post"]["responses"]
    assert "security" not in schema["paths"]["/health"]["get"]


def test_keys_from_files_and_the_key_ring(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# clients\n{KEY}\n\n{hash_key(OTHER_KEY)}\n")
    ring = KeyRing.from_settings(f"@{keys}", None)
    assert ring.enabled and len(ring.digests) == 2
    assert ring.match(KEY.encode()) == 0 and ring.match(OTHER_KEY.encode()) == 1 and ring.match(b"nope") is None
    assert KeyRing.from_settings(None, keys).digests == ring.digests
    assert KeyRing.from_settings(f"{KEY},{KEY}", None).digests == ring.digests[:1]  # duplicates collapse
    assert not KeyRing.from_settings(None, None).enabled
    assert bearer_token(b"Bearer  abc ") == b"abc" and bearer_token(b"Bearer") is None and bearer_token(None) is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("short", "at least 16"),
        ("sha256:abcd", "64 hex digits"),
        ("@/nonexistent/keys.txt", "cannot read the key file"),
        (" , ", "holds no key"),
    ],
)
def test_bad_key_settings_fail_at_start_without_echoing_the_key(spec: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        ServiceSettings(api_keys=spec)
    assert message in str(info.value) and (spec.startswith("@") or spec not in str(info.value))


def test_keys_never_reach_logs_or_reprs(keyed: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    keyed.get("/recommend/101", headers={"Authorization": "Bearer wrong-secret-value-0000"})
    keyed.get("/recommend/101", headers=GOOD)
    settings = ServiceSettings(api_keys=KEY)
    assert KEY not in repr(settings) and KEY not in str(settings.model_dump())
    assert "wrong-secret-value" not in caplog.text and KEY not in caplog.text
    assert settings.to_env()["RECSYS_API_KEYS"] == KEY  # workers rebuild the same settings
    assert ServiceSettings.model_validate({}).api_keys is None


def test_parse_key_and_hash_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_key(hash_key(KEY), "x") == parse_key(KEY, "x")
    assert security_main(["new"]) == 0
    out = capsys.readouterr().out
    key = out.split("client):")[1].split()[0]
    assert hash_key(key) in out
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(KEY + "\n"))
    assert security_main(["hash"]) == 0 and capsys.readouterr().out.strip() == hash_key(KEY)
    assert security_main([]) == 2


# ---------------------------------------------------------------------------------------------------
# where the service may listen
# ---------------------------------------------------------------------------------------------------


def test_beyond_loopback_needs_keys_or_an_explicit_anonymous_setting(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        ServiceSettings(host="0.0.0.0")
    assert "RECSYS_API_KEYS" in str(info.value) and "RECSYS_ALLOW_ANONYMOUS" in str(info.value)
    assert ServiceSettings(host="0.0.0.0", api_keys=KEY).host == "0.0.0.0"
    assert ServiceSettings(host="0.0.0.0", allow_anonymous=True).allow_anonymous
    for host in ("127.0.0.1", "127.8.9.10", "::1", "localhost"):
        assert is_loopback(host) and ServiceSettings(host=host).host == host
    for host in ("0.0.0.0", "::", "", "10.1.2.3", "example.org"):
        assert not is_loopback(host)


def test_main_refuses_0_0_0_0_without_keys_naming_both_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], int_cache: TinyCache
) -> None:
    monkeypatch.setenv("RECSYS_HOST", "0.0.0.0")
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(int_cache.dir))
    monkeypatch.delenv("RECSYS_API_KEYS", raising=False)
    assert main([]) == EXIT_BAD_CONFIG
    err = capsys.readouterr().err
    assert "RECSYS_API_KEYS" in err and "RECSYS_ALLOW_ANONYMOUS" in err and "0.0.0.0" in err
    monkeypatch.setenv("RECSYS_API_KEYS", "sha256:zz")
    assert main([]) == EXIT_BAD_CONFIG
    assert "sha256:zz" not in capsys.readouterr().err  # values are never printed (they may be keys)


def test_unknown_variables_are_named_with_the_closest_setting() -> None:
    warnings = unknown_variables({"RECSYS_API_KEY": "x", "RECSYS_PORT": "1", "RECSYS_ROOT": "/", "HOME": "/"})
    assert warnings == ["RECSYS_API_KEY is not a setting of the service and is ignored; did you mean RECSYS_API_KEYS?"]
    with pytest.raises(ValidationError):
        ServiceSettings(not_a_setting=1)  # type: ignore[call-arg]


# ---------------------------------------------------------------------------------------------------
# body size, rate limit, deadline
# ---------------------------------------------------------------------------------------------------


def test_a_body_over_the_limit_gets_413_declared_or_streamed(
    int_cache: TinyCache, make_client: Callable[..., TestClient]
) -> None:
    with make_client(int_cache.dir, max_body_bytes=1000) as c:
        big = b'{"product_ids": [' + b"101," * 400 + b"101]}"
        declared = c.post("/recommend/batch", content=big, headers={"content-type": "application/json"})
        assert declared.status_code == 413
        assert declared.json() == {"detail": "the request body is larger than the limit of 1000 bytes"}

        def chunks() -> Iterator[bytes]:
            yield b'{"product_ids": ['
            for _ in range(400):
                yield b"101,"
            yield b"101]}"

        streamed = c.post("/recommend/batch", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413 and streamed.content == declared.content
        small = c.post("/recommend/batch", json={"product_ids": [101]})
        assert small.status_code == 200


def test_the_default_limit_refuses_50_mb(int_cache: TinyCache, make_client: Callable[..., TestClient]) -> None:
    with make_client(int_cache.dir) as c:
        r = c.post("/recommend/batch", content=b"x" * (50 * 2**20), headers={"content-type": "application/json"})
        assert r.status_code == 413 and "2097152 bytes" in r.json()["detail"]


def test_rate_limit_is_per_key_with_retry_after(int_cache: TinyCache, make_client: Callable[..., TestClient]) -> None:
    keys = f"{KEY},{OTHER_KEY}"
    with make_client(int_cache.dir, api_keys=keys, rate_limit_per_s=0.5, rate_limit_burst=2) as c:
        assert [c.get("/recommend/101", headers=GOOD).status_code for _ in range(2)] == [200, 200]
        limited = c.get("/recommend/101", headers=GOOD)
        assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
        assert "at most 0.5 requests per second" in limited.json()["detail"]
        other = {"Authorization": f"Bearer {OTHER_KEY}"}
        assert c.get("/recommend/101", headers=other).status_code == 200  # another key has its own bucket
        assert all(c.get("/health").status_code == 200 for _ in range(5))  # probes are never limited


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0])
    assert [bucket.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("a") == pytest.approx(0.5)
    now[0] = 0.5
    assert bucket.take("a") == 0.0 and bucket.take("a") > 0
    now[0] = 100.0
    bucket.forget_idle()
    assert bucket.buckets == {}


def test_a_request_past_its_deadline_gets_503(int_cache: TinyCache) -> None:
    app = create_app(ServiceSettings(cache_dir=int_cache.dir, reload_interval_s=0.0, request_timeout_s=0.2))

    @app.get("/slow")
    async def slow() -> dict[str, Any]:
        await asyncio.sleep(5)
        return {}

    with TestClient(app) as c:
        r = c.get("/slow")
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json() == {"detail": "the request did not complete within 0.2 s; try again"}
        assert c.get("/recommend/101").status_code == 200
