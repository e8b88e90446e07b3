"""Transports: running commands on, and moving bytes to, one host (local, or over SSH),
with the SSH connection, command execution, host-key checks and shell quoting."""
