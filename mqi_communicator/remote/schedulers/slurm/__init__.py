"""The Slurm adapter: sbatch/squeue/scancel through the transport, with the markers
deciding when squeue cannot say."""
