"""The commands of the ``mqi-communicator`` CLI: name -> where it is defined.

Commands are imported only when invoked (or listed by ``--help``): ``top`` and
``status`` must not pay for Starlette, uvicorn, paramiko or Rich at every start.
"""

from __future__ import annotations

__all__ = ["COMMANDS"]

#: Command name -> ``"module:attribute"``, the module relative to this package.
COMMANDS: dict[str, str] = {
    "run": ".run:run",
    "demo": ".demo:demo",
    "status": ".status:status",
    "top": ".top:top",
    "cases": ".cases:cases",
    "gpus": ".gpus:gpus",
    "web": ".web_cmd:web",
    "diagram": ".diagram_cmd:diagram",
    "check-config": ".config_cmds:check_config",
    "doctor": ".config_cmds:doctor",
    "service": ".service_unit:service",
    "db": ".db:db",
}
