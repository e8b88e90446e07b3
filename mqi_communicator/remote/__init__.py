"""Remote adapters: transports (SSH, local) and schedulers (Pueue, Slurm, local)."""
