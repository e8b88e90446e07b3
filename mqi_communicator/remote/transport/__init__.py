"""Transports: the two implementations of the Transport protocol, running commands on and
moving case trees to one host: the control PC itself (local) or a server over SSH."""
