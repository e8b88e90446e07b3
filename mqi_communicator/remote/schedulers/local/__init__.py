"""The local scheduler: jobs started directly on the host, in their own process group,
known only by their markers."""
