"""The engine: operation lifecycle, durable store, worker runtime and kind registry.

It knows nothing of HTTP; the server translates requests into the calls exported here.
"""

from longops.engine.engine import Engine
from longops.engine.failures import OperationFailed
from longops.engine.records import NewOperation, OperationRecord, State
from longops.engine.registry import Kind, Registry
from longops.engine.worker import Worker

__all__ = [
    "Engine",
    "Kind",
    "NewOperation",
    "OperationFailed",
    "OperationRecord",
    "Registry",
    "State",
    "Worker",
]
