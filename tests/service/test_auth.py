"""Optional API keys: Bearer keys on every endpoint but health probes, metrics and docs."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from pydantic import ValidationError

from tests.service.conftest import make_settings

KEY = "user-key-0123456789"
ADMIN_KEY = "admin-key-0123456789"
SENTIMENT = ("post", "/v1/sentiment", {"texts": ["good"]})


@pytest.fixture
def keyed_client(app_factory, tiny_model_dir) -> FlaskClient:
    app = app_factory(tiny_model_dir, api_keys=(KEY,), admin_api_keys=(ADMIN_KEY,))
    return app.test_client()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


V2_INFER = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["good"]}]}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        SENTIMENT,
        ("get", "/v1/models", None),
        ("post", "/v1/models/sentiment/reload", None),
        ("get", "/v2/models/sentiment", None),
        ("post", "/v2/models/sentiment/infer", V2_INFER),
        ("get", "/v2", None),
        ("post", "/v2/repository/index", None),
    ],
)
@pytest.mark.parametrize(
    "headers",
    [{}, bearer("wrong-key-0123456789"), {"Authorization": KEY}, bearer(KEY[:-1]), bearer("")],
)
def test_a_missing_or_wrong_key_is_a_401(keyed_client, method, path, body, headers) -> None:
    response = getattr(keyed_client, method)(path, json=body, headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    error = response.get_json()["error"]
    message = error if path.startswith("/v2") else error["message"]  # each API's error shape
    assert "Authorization: Bearer <key>" in message


@pytest.mark.parametrize("key", [KEY, ADMIN_KEY])
def test_a_valid_key_is_accepted(keyed_client: FlaskClient, key: str) -> None:
    assert (
        keyed_client.post(
            "/v1/sentiment", json={"texts": ["good"]}, headers=bearer(key)
        ).status_code
        == 200
    )
    assert (
        keyed_client.post(
            "/v2/models/sentiment/infer", json=V2_INFER, headers=bearer(key)
        ).status_code
        == 200
    )
    assert (
        keyed_client.get("/v1/models", headers={"authorization": f"bearer {key}"}).status_code
        == 200
    )


@pytest.mark.parametrize(
    "path", ["/v2/health/live", "/v2/health/ready", "/metrics", "/openapi.json", "/docs"]
)
def test_probes_metrics_and_docs_need_no_key(keyed_client: FlaskClient, path: str) -> None:
    assert keyed_client.get(path).status_code == 200


def test_a_failed_load_s_reason_is_only_for_clients_with_a_key(app_factory, own_model_dir) -> None:
    # The reason names the server's files and checksums: the public probe keeps it back.
    vocab = own_model_dir / "sentiment" / "vocab.json"
    vocab.write_text(vocab.read_text("utf-8").replace("awful", "awfull"), "utf-8")
    client = app_factory(own_model_dir, api_keys=(KEY,)).test_client()

    public = client.get("/v2/health/ready")
    keyed = client.get("/v2/health/ready", headers=bearer(KEY))

    assert public.status_code == keyed.status_code == 503
    assert str(vocab) not in public.get_data(as_text=True)
    assert "sha256" not in public.get_data(as_text=True)
    error = public.get_json()["error"]
    assert error["message"].startswith("not ready, 1 model(s) failed to load: sentiment (")
    assert "API key" in error["message"] and "log" in error["message"]
    assert list(error["details"]["failed"]) == ["sentiment"]
    shown = keyed.get_json()["error"]
    assert f"{vocab}: sha256 mismatch" in shown["message"]
    assert f"{vocab}: sha256 mismatch" in shown["details"]["failed"]["sentiment"]


def test_an_empty_model_dir_s_path_is_only_for_clients_with_a_key(app_factory, tmp_path) -> None:
    client = app_factory(tmp_path, api_keys=(KEY,)).test_client()

    public = client.get("/v2/health/ready").get_json()["error"]["message"]
    keyed = client.get("/v2/health/ready", headers=bearer(KEY)).get_json()["error"]["message"]

    assert str(tmp_path) not in public and public.startswith("not ready, no model to load")
    assert str(tmp_path) in keyed


def test_metrics_can_need_a_key(app_factory, tiny_model_dir) -> None:
    client = app_factory(tiny_model_dir, api_keys=(KEY,), metrics_public=False).test_client()

    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer(KEY)).status_code == 200
    assert client.get("/v2/health/ready").status_code == 200  # probes stay public


def test_reloading_needs_an_admin_key(keyed_client: FlaskClient) -> None:
    refused = keyed_client.post("/v1/models/sentiment/reload", headers=bearer(KEY))
    allowed = keyed_client.post("/v1/models/sentiment/reload", headers=bearer(ADMIN_KEY))

    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "forbidden"
    assert allowed.status_code == 200


def test_without_keys_nothing_is_checked_but_nobody_may_reload(client: FlaskClient) -> None:
    assert client.post("/v1/sentiment", json={"texts": ["good"]}).status_code == 200
    # A reload replaces a model in every worker: not for anyone who can reach the port.
    refused = client.post("/v1/models/sentiment/reload")
    assert refused.status_code == 403
    error = refused.get_json()["error"]
    assert error["code"] == "forbidden" and "set ADMIN_API_KEYS" in error["message"]
    assert "SIGHUP" in error["message"]


def test_with_user_keys_only_nobody_may_reload(app_factory, tiny_model_dir) -> None:
    client = app_factory(tiny_model_dir, api_keys=(KEY,)).test_client()
    refused = client.post("/v1/models/sentiment/reload", headers=bearer(KEY))
    assert refused.status_code == 403
    assert "set ADMIN_API_KEYS" in refused.get_json()["error"]["message"]


def test_short_keys_are_refused_and_keys_never_shown(tiny_model_dir) -> None:
    with pytest.raises(ValidationError, match="at least 16 characters"):
        make_settings(tiny_model_dir, api_keys=("short",))

    settings = make_settings(tiny_model_dir, api_keys=(KEY,), admin_api_keys=(ADMIN_KEY,))
    assert KEY not in repr(settings) and ADMIN_KEY not in repr(settings)
    assert settings.auth_enabled


def test_keys_are_read_comma_separated_from_the_environment(monkeypatch) -> None:
    from service.settings import Settings

    monkeypatch.setenv("API_KEYS", f" {KEY} , other-key-0123456789,")

    assert Settings().api_keys == (KEY, "other-key-0123456789")
