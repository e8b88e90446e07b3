"""Verified, atomic case-tree transfers: tar stream, sha256 manifest, far-side receiver and
scripts, SSH upload (compressed when it pays) and download, and the abort hook they honour."""
