"""Settings of the HTTP layer."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class ServerConfig:
    api_keys: dict[str, str] = field(default_factory=dict)
    """{key: tenant}; empty means an open server with one anonymous tenant."""
    max_body_bytes: int = 1 << 20
    max_media_body_bytes: int = 32 << 20
    """For requests that carry images inline (video generation)."""
    max_upload_bytes: int = 2 << 30
    """Largest file a resumable upload may deliver (Google's limit: 2 GB)."""
    max_wait_seconds: float = 60.0
    """Longest a `:wait` call blocks, whatever timeout the client asks for."""
    watch_keepalive_seconds: float = 15.0
    """How often a `:watch` stream with nothing new sends a keep-alive comment."""
    metrics_token: str | None = None
    """A bearer token `/metrics` asks for (`LONGOPS_METRICS_TOKEN`); None: open."""
    default_page_size: int = 50
    max_page_size: int = 1000


def default_public_url(host: str, port: int | str) -> str:
    """Where clients reach a server listening on host:port, when `--public-url` is not
    given: `longops serve` from its --host/--port, `longops worker` from the same
    LONGOPS_HOST/LONGOPS_PORT, so both build the same links. A wildcard address is
    reached on loopback."""
    reachable = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host
    if ":" in reachable:  # an IPv6 address
        reachable = f"[{reachable}]"
    return f"http://{reachable}:{port}"
