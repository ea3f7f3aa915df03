"""longops: a self-hosted long-running operations service, and this SDK for it."""

from longops import errors, types
from longops._client import Client
from longops._version import __version__

__all__ = ["Client", "__version__", "errors", "types"]
