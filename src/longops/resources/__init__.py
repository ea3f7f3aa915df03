from longops.resources.files import AsyncFiles, Files
from longops.resources.models import AsyncModels, Models
from longops.resources.operations import AsyncOperations, Operations

__all__ = ["AsyncFiles", "AsyncModels", "AsyncOperations", "Files", "Models", "Operations"]
