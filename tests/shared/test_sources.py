"""Where bytes come from: library paths stay inside the roots; URLs must be public."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.sources import (
    SourceRejected,
    expand_directory,
    fetch_url,
    read_library_file,
    resolve_library_path,
)
from tests.support.http import serve_http


def test_paths_inside_roots_resolve(library: Path) -> None:
    (library / "a").mkdir()
    (library / "a" / "x.png").write_bytes(b"x")
    assert resolve_library_path(str(library / "a" / "x.png"), [library]) == library / "a" / "x.png"
    assert resolve_library_path("a/x.png", [library]) == library / "a" / "x.png"


@pytest.mark.parametrize("raw", ["/etc/passwd", "../../../etc/passwd", "a/../../outside"])
def test_paths_outside_roots_are_refused(library: Path, raw: str) -> None:
    (library / "a").mkdir()
    with pytest.raises(SourceRejected) as caught:
        resolve_library_path(raw, [library])
    assert caught.value.code == "path_outside_roots"


def test_symlinks_out_of_the_library_are_refused(library: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"secret")
    (library / "link.png").symlink_to(secret)
    (library / "ok.png").write_bytes(b"ok")
    with pytest.raises(SourceRejected) as caught:
        read_library_file("link.png", [library], 100)
    assert caught.value.code == "path_outside_roots"
    assert expand_directory(str(library), "*.png", True, [library], 10) == [library / "ok.png"]


def test_no_roots_means_no_server_paths(tmp_path: Path) -> None:
    with pytest.raises(SourceRejected) as caught:
        resolve_library_path(str(tmp_path), [])
    assert caught.value.code == "paths_disabled"


def test_directory_expansion_pattern_recursion_and_limit(library: Path) -> None:
    (library / "sub").mkdir()
    for name in ("a.png", "b.jpg", "sub/c.png"):
        (library / name).write_bytes(b"x")
    assert len(expand_directory(str(library), "*.png", True, [library], 10)) == 2
    assert len(expand_directory(str(library), "*.png", False, [library], 10)) == 1
    with pytest.raises(SourceRejected) as caught:
        expand_directory(str(library), "*", True, [library], 2)
    assert caught.value.code == "too_many_items"


@pytest.fixture
def local_server() -> Iterator[str]:
    def respond(path: str) -> tuple[int, dict[str, str], bytes]:
        if path == "/redirect":
            return 302, {"Location": "http://169.254.169.254/latest/meta-data"}, b""
        return 200, {}, b"x" * (5000 if path == "/big" else 10)

    with serve_http(respond) as url:
        yield url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x.png",
        "http://localhost/x.png",
        "http://10.1.2.3/x.png",
        "http://192.168.0.1/x.png",
        "http://169.254.169.254/latest",
        "http://[::1]/x.png",
        "http://0.0.0.0/x.png",
    ],
)
def test_private_and_loopback_urls_are_refused(url: str) -> None:
    with pytest.raises(SourceRejected) as caught:
        fetch_url(url, 1000, 5)
    assert caught.value.code == "forbidden_address"


def test_other_schemes_are_refused() -> None:
    with pytest.raises(SourceRejected) as caught:
        fetch_url("file:///etc/passwd", 1000, 5)
    assert caught.value.code == "unsupported_url"


def test_redirects_are_rechecked_and_size_capped(local_server: str) -> None:
    assert fetch_url(f"{local_server}/ok", 1000, 5, allow_private=True) == b"x" * 10
    with pytest.raises(SourceRejected) as caught:
        fetch_url(f"{local_server}/big", 1000, 5, allow_private=True)
    assert caught.value.code == "file_too_large"


def test_a_redirect_to_a_private_address_is_refused(
    local_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shared.sources as sources

    original = sources.check_public_host

    def loopback_is_public_for_this_test(host: str, port: int) -> None:
        if host != "127.0.0.1":
            original(host, port)

    monkeypatch.setattr(sources, "check_public_host", loopback_is_public_for_this_test)
    assert fetch_url(f"{local_server}/ok", 1000, 5) == b"x" * 10
    with pytest.raises(SourceRejected) as caught:
        fetch_url(f"{local_server}/redirect", 1000, 5)
    assert caught.value.code == "forbidden_address"
