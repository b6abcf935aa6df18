"""The agent's configuration, as the agent's modules import it.

The schema, its checks and the file's location are :mod:`agent_config`'s, shared with the
cloud's provisioning (which renders the same TOML) without the agent's runtime.
"""

from agent_config import (
    AgentConfig,
    DiscoverySettings,
    MqttSettings,
    UpdateSettings,
    default_config_path,
    default_data_dir,
    dump_config,
    load_config,
    parse_config,
)

__all__ = [
    "AgentConfig",
    "DiscoverySettings",
    "MqttSettings",
    "UpdateSettings",
    "default_config_path",
    "default_data_dir",
    "dump_config",
    "load_config",
    "parse_config",
]
