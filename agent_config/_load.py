"""Reading, checking and writing the agent's TOML configuration.

Environment overrides: ``PRINTERMASTER_<KEY>``, with ``__`` between nested keys, e.g.
``PRINTERMASTER_BRANCH_ID``, ``PRINTERMASTER_MQTT__PASSWORD``, ``PRINTERMASTER_MQTT__PORT=8883``.
The value is read as the key's type (``true``/``false``, numbers). Lists (``printers``) cannot be
set this way; an unknown ``PRINTERMASTER_*`` name is an error, so a typo never goes unnoticed.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol import ProtocolError, validate_id

from ._errors import ConfigError
from ._schema import AgentConfig, default_config_path, default_data_dir

ENV_PREFIX: Final = "PRINTERMASTER_"


def load_public_key(text: str) -> Ed25519PublicKey:
    """A base64 raw 32-byte Ed25519 key (what ``printermaster release keygen`` prints)."""
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"update.public_key is not a base64 Ed25519 public key: {exc}") from exc


def _env_overrides(env: Mapping[str, str]) -> list[tuple[str, list[str], str]]:
    """``(variable, key path, value)`` for every ``PRINTERMASTER_*`` variable, sorted."""
    found = []
    for name, value in env.items():
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and len(upper) > len(ENV_PREFIX):
            path = upper[len(ENV_PREFIX) :].lower().split("__")
            found.append((name, path, value))
    return sorted(found)


def _apply_env(raw: dict[str, Any], env: Mapping[str, str], source: str) -> None:
    """Set each override in ``raw``, converted to the type of the key it names."""
    for name, path, value in _env_overrides(env):
        struct: Any = AgentConfig
        target = raw
        for depth, key in enumerate(path):
            fields = {f.encode_name: f for f in msgspec.structs.fields(struct)}
            dotted = ".".join(path[: depth + 1])
            if key not in fields:
                raise ConfigError(f"{name}: no setting {dotted!r} (from the environment)")
            field_type = fields[key].type
            last = depth == len(path) - 1
            is_struct = isinstance(field_type, type) and issubclass(field_type, msgspec.Struct)
            if last and is_struct:
                raise ConfigError(f"{name}: {dotted!r} is a table; set its keys, e.g. {name}__KEY")
            if last:
                if key == "printers":
                    raise ConfigError(f"{name}: printers cannot be set from the environment")
                try:
                    target[key] = msgspec.convert(value, field_type, strict=False)
                except msgspec.ValidationError as exc:
                    raise ConfigError(f"{name}: {dotted}: {exc}") from exc
            elif not is_struct:
                raise ConfigError(f"{name}: {dotted!r} has no keys below it")
            else:
                nested = target.setdefault(key, {})
                if not isinstance(nested, dict):
                    raise ConfigError(f"{source}: {dotted}: expected a table")
                struct, target = field_type, nested


def parse_config(
    data: bytes | str, source: str = "config", *, env: Mapping[str, str] | None = None
) -> AgentConfig:
    """Decode and validate a TOML config; raises :class:`ConfigError` naming the bad key.

    ``env`` (e.g. ``os.environ``) may override keys, see the module docstring; a missing
    ``data_dir`` becomes :func:`default_data_dir`.
    """
    try:
        raw = msgspec.toml.decode(data)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    if env is not None:
        _apply_env(raw, env, source)
    raw.setdefault("data_dir", str(default_data_dir()))
    try:
        config = msgspec.convert(raw, AgentConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    try:
        validate_id(config.branch_id, "branch_id")
        validate_id(config.agent_id, "agent_id")
        names = [validate_id(p.name, f"printers[{i}].name") for i, p in enumerate(config.printers)]
    except ProtocolError as exc:
        raise ConfigError(f"{source}: {exc.message}") from exc
    if config.heartbeat_interval <= 0 or config.status_poll_interval <= 0:
        raise ConfigError(f"{source}: heartbeat_interval and status_poll_interval must be > 0")
    if config.heartbeat_expiry <= config.heartbeat_interval:
        raise ConfigError(
            f"{source}: status_expiry ({config.heartbeat_expiry} s) must be longer than "
            f"heartbeat_interval ({config.heartbeat_interval:g} s), or the agent flaps offline"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: printers: names must be unique, got {names}")
    if config.update is not None:
        try:
            validate_id(config.update.channel, "update.channel")
        except ProtocolError as exc:
            raise ConfigError(f"{source}: {exc.message}") from exc
        if not config.update.base_url.startswith("https://"):
            raise ConfigError(f"{source}: update.base_url must start with https://")
        try:
            load_public_key(config.update.public_key)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
    for i, endpoint in enumerate(config.mqtt.endpoints()):
        where = f"mqtt.brokers[{i}].port" if config.mqtt.brokers else "mqtt.port"
        if not 1 <= endpoint.port <= 65535:
            raise ConfigError(f"{source}: {where} must be 1-65535, got {endpoint.port}")
    if not config.mqtt.failback_interval > 0:
        raise ConfigError(f"{source}: mqtt.failback_interval must be > 0")
    return config


def load_config(
    path: str | Path | None = None, *, env: Mapping[str, str] | None = os.environ
) -> AgentConfig:
    """Read the config at ``path`` (default :func:`default_config_path`), with ``env`` overrides."""
    path = Path(path) if path is not None else default_config_path()
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(
            f"no config at {path}: provision the agent in the cloud and save its TOML there, "
            "or pass --config"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    return parse_config(data, str(path), env=env)


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def dump_config(config: AgentConfig) -> str:
    """TOML text of ``config`` (what provisioning hands to a new agent).

    TOML has no null: unset optional keys are left out, which reads back as the same default.
    """
    import tomli_w

    data = _without_none(msgspec.to_builtins(config))
    return tomli_w.dumps(data, multiline_strings=True)
