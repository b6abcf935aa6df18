"""The MQTT adapter: the only package that builds MQTT clients and touches paho or aiomqtt
internals.

- :func:`make_client` builds every client of the product (TLS, credentials, client id, MQTT 5
  session expiry, clean start, will, manual PUBACKs, Nagle off) — :mod:`._client`;
- :class:`SessionLoop` is the reconnect loop of the API and of the agent: capped exponential
  backoff with full jitter, an ordered broker list with failover and failback — :mod:`._session`;
- the MQTT 5 properties of requests, replies and connections — :mod:`._properties`;
- fast paths through paho's and aiomqtt's internals, applied explicitly
  (:func:`install_fast_paths`, ``make_client(fast=True)``, :func:`publish_qos1`), each behind a
  check of the installed release with the plain public path as fallback — :mod:`._fastpaths`,
  :mod:`._fastprops`, :mod:`._versions`; the paho client under aiomqtt — :mod:`._paho`.

``protocol`` stays the pure wire contract: importing it imports neither paho nor aiomqtt.
"""

from ._backoff import Backoff
from ._client import (
    Client,
    Nodelay,
    Will,
    client_tls_context,
    make_client,
    make_paho_client,
    nodelay_socket_options,
)
from ._fastpaths import (
    coalesce_writes,
    handled_at_once,
    install_fast_paths,
    publish_acked,
    publish_qos1,
)
from ._paho import client_socket, set_tcp_nodelay, tcp_nodelay, watch_pubacks
from ._properties import (
    CONTENT_TYPE_JSON,
    connect_properties,
    publish_properties,
    reply_properties,
    request_properties,
)
from ._session import BrokerRotation, Endpoint, SessionLoop, reachable
from ._versions import AIOMQTT, KNOWN, PAHO, VersionGuard

__all__ = [
    "AIOMQTT",
    "CONTENT_TYPE_JSON",
    "KNOWN",
    "PAHO",
    "Backoff",
    "BrokerRotation",
    "Client",
    "Endpoint",
    "Nodelay",
    "SessionLoop",
    "VersionGuard",
    "Will",
    "client_socket",
    "client_tls_context",
    "coalesce_writes",
    "connect_properties",
    "handled_at_once",
    "install_fast_paths",
    "make_client",
    "make_paho_client",
    "nodelay_socket_options",
    "publish_acked",
    "publish_properties",
    "publish_qos1",
    "reachable",
    "reply_properties",
    "request_properties",
    "set_tcp_nodelay",
    "tcp_nodelay",
    "watch_pubacks",
]
