"""What every resource's routes share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from starlette.requests import Request
from starlette.routing import BaseRoute

from longops.engine import Engine
from longops.server.auth import Authenticator
from longops.server.config import ServerConfig
from longops.server.requests import PageTokens, parse_page_size


class Keyed(Protocol):
    seq: int


class Routes:
    """The engine, the caller's tenant and the server's limits, for one resource's routes."""

    def __init__(self, engine: Engine, auth: Authenticator, config: ServerConfig) -> None:
        self.engine = engine
        self.auth = auth
        self.config = config

    def routes(self) -> list[BaseRoute]:
        raise NotImplementedError

    def page(self, request: Request, scope: str) -> tuple[int, int | None]:
        """The page size asked for and, from `pageToken`, where the page starts.

        `scope` binds tokens to one listing: a token from another is refused.
        """
        query = request.query_params
        size = parse_page_size(
            query.get("pageSize", query.get("page_size")),
            self.config.default_page_size,
            self.config.max_page_size,
        )
        token = query.get("pageToken", query.get("page_token"))
        return size, PageTokens.decode(token, scope) if token else None

    @staticmethod
    def next_page_token(items: Sequence[Keyed], size: int, scope: str) -> str | None:
        """Lists fetch one item more than a page: its presence means another page."""
        return PageTokens.encode(items[size - 1].seq, scope) if len(items) > size else None
