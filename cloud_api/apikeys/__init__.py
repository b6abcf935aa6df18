"""Dashboard API keys: bound to a chain and its branches, shown once, stored hashed in the
job store's database (shared by every API instance), with an optional expiry and rotation."""

from ._controller import ApiKeysController
from ._db import DbApiKeyStore, import_key_file
from ._service import ApiKeyService
from ._store import ApiKeyRecord, ApiKeyStore, MemoryApiKeyStore, read_key_file

__all__ = [
    "ApiKeyRecord",
    "ApiKeyService",
    "ApiKeyStore",
    "ApiKeysController",
    "DbApiKeyStore",
    "MemoryApiKeyStore",
    "import_key_file",
    "read_key_file",
]
