from longops.resources.operations import AsyncOperations, Operations

__all__ = ["AsyncOperations", "Operations"]
