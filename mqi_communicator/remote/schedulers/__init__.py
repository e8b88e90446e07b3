"""Scheduler adapters, one package each (local, pueue, slurm): a command builder,
a pure parser of the tool's output, and the thin executor behind the Scheduler protocol."""
