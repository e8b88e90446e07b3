"""Transports: moving bytes and running commands on one host (local, or SSH).

Owns the SSH connection, command execution, host-key checking and shell quoting."""
