"""Entry point of the single-file agent executable (see printermaster-agent.spec)."""

import multiprocessing
import sys

from printermaster import agent_main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(agent_main())
