"""MQI Communicator: runs MOQUI QA cases on remote GPU servers, crash-safely.

The public names are re-exported here; everything else is internal.
"""

from .errors import MqiError

__all__ = ["MqiError"]
__version__ = "0.1.0"
