"""The commands of the ``mqi-communicator`` CLI other than ``db``, in help order."""

from __future__ import annotations

import click

from .cases import cases
from .config_cmds import check_config, doctor
from .demo import demo
from .diagram_cmd import diagram
from .gpus import gpus
from .run import run
from .service_unit import service
from .status import status
from .top import top
from .web_cmd import web

__all__ = ["COMMANDS"]

COMMANDS: list[click.Command] = [
    run,
    demo,
    status,
    top,
    cases,
    gpus,
    web,
    diagram,
    check_config,
    doctor,
    service,
]
