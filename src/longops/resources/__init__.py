from longops.resources.file_search_stores import (
    AsyncDocuments,
    AsyncFileSearchStores,
    Documents,
    FileSearchStores,
)
from longops.resources.files import AsyncFiles, Files
from longops.resources.models import AsyncModels, Models
from longops.resources.operations import AsyncOperations, Operations
from longops.resources.webhooks import AsyncWebhooks, Webhooks

__all__ = [
    "AsyncDocuments",
    "AsyncFileSearchStores",
    "AsyncFiles",
    "AsyncModels",
    "AsyncOperations",
    "AsyncWebhooks",
    "Documents",
    "FileSearchStores",
    "Files",
    "Models",
    "Operations",
    "Webhooks",
]
