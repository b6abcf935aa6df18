"""Dashboard API keys: bound to a chain and its branches, shown once, stored hashed."""

from ._controller import ApiKeysController
from ._service import ApiKeyService
from ._store import ApiKeyRecord, ApiKeyStore, JsonFileApiKeyStore, MemoryApiKeyStore

__all__ = [
    "ApiKeyRecord",
    "ApiKeyService",
    "ApiKeyStore",
    "ApiKeysController",
    "JsonFileApiKeyStore",
    "MemoryApiKeyStore",
]
