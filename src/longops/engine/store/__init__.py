"""Operation stores: one protocol, one implementation per database."""

from longops.engine.store.base import (
    Change,
    LeaseState,
    Store,
    StoreBusy,
    StoreUnavailable,
    TenantUsage,
    open_store,
)

__all__ = [
    "Change",
    "LeaseState",
    "Store",
    "StoreBusy",
    "StoreUnavailable",
    "TenantUsage",
    "open_store",
]
