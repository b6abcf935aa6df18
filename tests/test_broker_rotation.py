"""The agent's ordered broker list: the old single host/port form still works, each broker
inherits what it leaves out, bad entries are named, and the rotation moves on at once and backs
off only after a whole round failed."""

from __future__ import annotations

import random

import pytest

from branch_agent import ConfigError, parse_config
from mqtt_adapter import Backoff, BrokerRotation

BASE = """
branch_id = "b1"
agent_id = "a1"
data_dir = "/tmp/pm-rotation"
[mqtt]
username = "agent:b1:a1"
password = "p"
"""


def test_the_single_host_form_is_one_broker() -> None:
    config = parse_config(BASE + 'host = "mq.example.com"\nport = 8883\ntls = true\n')
    (only,) = config.mqtt.endpoints()
    assert (only.host, only.port, only.tls) == ("mq.example.com", 8883, True)


def test_brokers_in_order_inherit_the_section() -> None:
    config = parse_config(
        BASE
        + "port = 8883\ntls = true\nfailback_interval = 10.0\n"
        + '[[mqtt.brokers]]\nhost = "mq1"\n'
        + '[[mqtt.brokers]]\nhost = "mq2"\nport = 443\ntransport = "websockets"\n'
    )
    first, second = config.mqtt.endpoints()
    assert (first.host, first.port, first.transport, first.tls) == ("mq1", 8883, "tcp", True)
    assert (second.host, second.port, second.transport) == ("mq2", 443, "websockets")
    assert first.username == second.username == "agent:b1:a1" and not first.brokers
    assert config.mqtt.failback_interval == 10.0


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ('[[mqtt.brokers]]\nhost = "mq1"\nport = 70000\n', "mqtt.brokers[0].port"),
        ("[[mqtt.brokers]]\nport = 1883\n", "host"),
        ('[[mqtt.brokers]]\nhost = "mq1"\nspeed = 1\n', "speed"),
    ],
)
def test_bad_broker_entries_are_named(extra: str, named: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(BASE + extra)
    assert named in str(error.value)


def test_rotation_moves_on_at_once_and_backs_off_after_a_round() -> None:
    config = parse_config(BASE + "".join(f'[[mqtt.brokers]]\nhost = "mq{n}"\n' for n in (1, 2, 3)))
    rotation = BrokerRotation(
        config.mqtt.endpoints(), Backoff(base=1.0, cap=4.0, rng=random.Random(1))
    )
    assert rotation.current.host == "mq1" and rotation.preferred
    assert rotation.failed() == 0.0 and rotation.current.host == "mq2"
    assert rotation.failed() == 0.0 and rotation.current.host == "mq3"
    assert rotation.failed() > 0.0 and rotation.current.host == "mq1"  # a whole round failed
    assert rotation.failed() == 0.0 and rotation.current.host == "mq2"
    rotation.connected()  # on mq2: the next loss moves to mq3 at once
    assert not rotation.preferred
    rotation.back_to_preferred()
    assert rotation.current.host == "mq1" and rotation.preferred
