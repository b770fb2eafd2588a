"""Small edits of database URLs for tests that put something (a proxy, a closed port) in front of the server."""

from __future__ import annotations

from urllib.parse import parse_qs, parse_qsl, quote, urlencode, urlsplit


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


def connect_address(url: str) -> tuple[str, int]:
    """Where a client really connects: the URL's hostaddr (the stand-in's URLs have one) or its host, and the port."""
    host, port = host_and_port(url)
    hostaddr = parse_qs(urlsplit(url).query).get("hostaddr")
    return (hostaddr[0] if hostaddr else host), port


def pooler_entry(url: str, port: int) -> str:
    """The DB_POOLER_HOSTS entry naming this URL's host on another port (a proxy in front of the pooler)."""
    return f"{host_and_port(url)[0]}:{port}"


def with_params(url: str, **params: str | None) -> str:
    """The URL with query parameters set (None removes one); the others, hostaddr among them, are kept."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    for name, value in params.items():
        if value is None:
            query.pop(name, None)
        else:
            query[name] = value
    return parts._replace(query=urlencode(query, safe="/", quote_via=quote)).geturl()


def with_database(url: str, name: str) -> str:
    """The URL naming another database on the same server (query parameters kept)."""
    return urlsplit(url)._replace(path=f"/{quote(name)}").geturl()
