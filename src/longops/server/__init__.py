"""The HTTP API: Google's operations wire format over the engine."""

from longops.server.app import create_app
from longops.server.config import ServerConfig

__all__ = ["ServerConfig", "create_app"]
