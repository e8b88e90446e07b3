"""Remote adapters behind two narrow protocols (``protocol.py``): ``transport/`` runs commands
on a host, ``transfer/`` moves case trees, ``job/`` is one job's wrapper, and ``schedulers/``."""
