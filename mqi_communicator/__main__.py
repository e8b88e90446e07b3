"""``python -m mqi_communicator``: the CLI, for service managers that start an interpreter."""

from .cli import main

main()
