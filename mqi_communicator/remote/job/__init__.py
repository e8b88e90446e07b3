"""One job on a host: the wrapper, the command line it runs and its markers, the marker probe
and what it says about the job, the token-scoped process kill, and the job's log."""
