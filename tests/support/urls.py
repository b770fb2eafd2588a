"""Small edits of database URLs for tests that put something (a proxy, a closed port) in front of the server."""

from __future__ import annotations

from urllib.parse import urlsplit


def host_and_port(url: str) -> tuple[str, int]:
    """Host and port of a URL."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


def with_port(url: str, port: int) -> str:
    """The URL with its port replaced (host name kept, so TLS still verifies it)."""
    parts = urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    host = hostport.rsplit(":", 1)[0] if parts.port is not None else hostport
    return parts._replace(netloc=f"{userinfo}@{host}:{port}").geturl()
