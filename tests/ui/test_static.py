"""The web UI's files as the API serves them (no browser needed)."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

STATIC = Path(__file__).resolve().parents[2] / "api" / "static"


def test_the_web_ui_is_served_with_every_module_it_imports(api: TestClient) -> None:
    page = api.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/ui/main.js">' in page.text
    modules = {"main.js"}
    seen: set[str] = set()
    while modules:
        name = modules.pop()
        seen.add(name)
        response = api.get(f"/ui/{name}")
        assert response.status_code == 200, name
        assert "javascript" in response.headers["content-type"]
        assert response.headers["cache-control"] == "no-cache"
        imported = set(re.findall(r'from "\./([\w-]+\.js)"', response.text))
        modules |= imported - seen
    assert seen == {p.name for p in STATIC.glob("*.js")}, "a module no page imports"
    assert api.get("/ui/app.css").status_code == 200
