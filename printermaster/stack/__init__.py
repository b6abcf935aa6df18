"""A whole PrinterMaster system on one machine: Mosquitto, the API and agents as processes
under one state directory. Used by ``printermaster demo``, the test suite, the benchmark and the
chaos run."""

from ._children import ChildProcess, child_env
from ._stack import AgentHandle, ApiHandle, Stack

__all__ = ["AgentHandle", "ApiHandle", "ChildProcess", "Stack", "child_env"]
