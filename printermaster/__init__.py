"""The ``printermaster`` command and the local stack (broker + API + agents) it runs."""
