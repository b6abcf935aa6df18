"""The cloud HTTP API: Litestar routes over one MQTT 5 session to the broker."""

from ._app import create_app
from ._errors import HTTP_STATUS, ApiError
from ._server import serve, serve_worker, serve_workers
from ._settings import ApiSettings, MqttClientSettings, SettingsError, load_settings

__all__ = [
    "HTTP_STATUS",
    "ApiError",
    "ApiSettings",
    "MqttClientSettings",
    "SettingsError",
    "create_app",
    "load_settings",
    "serve",
    "serve_worker",
    "serve_workers",
]
