"""/mcp's doors, in-process: the API's key check (401), and the SDK's transport security, whose
allowed hosts and origins are settings (ASSETRAG_MCP_ALLOWED_HOSTS / _ORIGINS)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from shared.settings import Settings

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


def post(settings: Settings, headers: dict[str, str]) -> Any:
    from api.main import create_app

    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as api:
        return api.post("/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **headers})


def test_mcp_answers_on_localhost(settings: Settings) -> None:
    response = post(settings, {})
    assert response.status_code == 200, response.text
    assert "assetrag" in response.text  # the server's name, in its initialize answer


def test_an_unknown_host_is_refused_until_it_is_allowed(settings: Settings) -> None:
    named = {"Host": "assets.example.com"}
    assert post(settings, named).status_code == 421
    allowed = settings.model_copy(update={"mcp_allowed_hosts": ["assets.example.com"]})
    assert post(allowed, named).status_code == 200
    assert post(allowed, {"Host": "assets.example.com:8443"}).status_code == 200
    assert post(allowed, {"Host": "evil.example.com"}).status_code == 421


def test_a_browser_origin_is_refused_until_it_is_allowed(settings: Settings) -> None:
    origin = {"Origin": "https://agents.example.com"}
    assert post(settings, origin).status_code == 403
    allowed = settings.model_copy(update={"mcp_allowed_origins": ["https://agents.example.com"]})
    assert post(allowed, origin).status_code == 200


def test_the_allowed_hosts_are_read_from_the_environment(monkeypatch: Any) -> None:
    monkeypatch.setenv("ASSETRAG_MCP_ALLOWED_HOSTS", "assets.example.com, mcp.example.com")
    monkeypatch.setenv("ASSETRAG_MCP_ALLOWED_ORIGINS", "https://agents.example.com")
    read = Settings(_env_file=None)  # type: ignore[call-arg]
    assert read.mcp_allowed_hosts == ["assets.example.com", "mcp.example.com"]
    assert read.mcp_allowed_origins == ["https://agents.example.com"]


def test_without_a_key_mcp_answers_401_when_keys_are_on(settings: Settings) -> None:
    keyed = settings.model_copy(update={"api_keys": ["k-alpha:alpha"]})
    refused = post(keyed, {})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert post(keyed, {"Authorization": "Bearer wrong"}).status_code == 401
    assert post(keyed, {"Authorization": "Bearer k-alpha"}).status_code == 200
