"""Verified, atomic case-tree transfers: the tar stream, the sha256 manifest,
the far-side receiver and its scripts, and the SSH upload and download."""
