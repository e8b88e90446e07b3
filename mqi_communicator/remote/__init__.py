"""Remote adapters behind two protocols (``protocol.py``): ``transport/`` (over ``ssh/`` and
``transfer/``) reaches a host, ``job/`` is one job's wrapper, ``schedulers/`` run jobs."""
