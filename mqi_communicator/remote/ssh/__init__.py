"""SSH plumbing under the transport and the transfers: opening a connection with checked
host keys, and running one command on an exec channel with a deadline."""
