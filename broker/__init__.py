"""Mosquitto as PrinterMaster runs it: configuration, a launcher, and provisioning.

* :mod:`broker._config` writes ``mosquitto.conf`` for a state directory.
* :mod:`broker._roles` holds the ACL roles (agent, cloud, debug, admin) in one place.
* :mod:`broker._dynsec` writes the initial dynamic-security JSON and drives the plugin's
  ``$CONTROL/dynamic-security/v1`` API at run time.
* :mod:`broker._provisioning` adds, rotates, revokes and lists agent and debug logins.
* :mod:`broker._process` starts, waits for, stops and kills a Mosquitto process.
* :mod:`broker._tls` keeps a development CA and the server certificate for the TLS listeners.
"""

from ._config import (
    MAX_PACKET_BYTES,
    BrokerConfig,
    find_dynsec_plugin,
    find_mosquitto,
    render_mosquitto_conf,
)
from ._dynsec import (
    Credentials,
    DynSecAdmin,
    DynSecError,
    hash_password,
    initial_dynsec_document,
    new_password,
    write_initial_dynsec,
)
from ._errors import BrokerError
from ._process import MosquittoProcess, free_port, port_is_free, wait_for_port
from ._provisioning import AlreadyProvisioned, NotProvisioned, ProvisionedAgent, Provisioner
from ._roles import (
    ADMIN_ROLE,
    CLOUD_ROLE,
    DEBUG_ROLE,
    Acl,
    Role,
    admin_role,
    agent_role,
    agent_role_name,
    agent_username,
    cloud_role,
    debug_role,
    debug_role_name,
    debug_send_username,
    debug_username,
    doctor_username,
    parse_agent_username,
)
from ._tls import TlsMaterial, ensure_tls_material

__all__ = [
    "ADMIN_ROLE",
    "CLOUD_ROLE",
    "DEBUG_ROLE",
    "MAX_PACKET_BYTES",
    "Acl",
    "AlreadyProvisioned",
    "BrokerConfig",
    "BrokerError",
    "Credentials",
    "DynSecAdmin",
    "DynSecError",
    "MosquittoProcess",
    "NotProvisioned",
    "ProvisionedAgent",
    "Provisioner",
    "Role",
    "TlsMaterial",
    "admin_role",
    "agent_role",
    "agent_role_name",
    "agent_username",
    "cloud_role",
    "debug_role",
    "debug_role_name",
    "debug_send_username",
    "debug_username",
    "doctor_username",
    "ensure_tls_material",
    "find_dynsec_plugin",
    "find_mosquitto",
    "free_port",
    "hash_password",
    "initial_dynsec_document",
    "new_password",
    "parse_agent_username",
    "port_is_free",
    "render_mosquitto_conf",
    "wait_for_port",
    "write_initial_dynsec",
]
