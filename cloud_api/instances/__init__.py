"""Several API instances sharing the work: leases in the store, adoption of a dead instance's
jobs and MQTT session (docs/operations.md)."""

from ._adopter import InstanceLeases
from ._controller import InstancesController
from ._drain import client_id, drain_session
from ._leases import Lease, Leases, take_over_jobs

__all__ = [
    "InstanceLeases",
    "InstancesController",
    "Lease",
    "Leases",
    "client_id",
    "drain_session",
    "take_over_jobs",
]
