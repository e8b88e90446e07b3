"""The Pueue adapter: pueue add/status/kill through the transport, plus adoption of
jobs from the original system (legacy)."""
