"""The forwarding engine: desired state, VIF allocation, templates, hotplug, persistence.

The API is in api.py, the engine in core.py; it reaches the kernel through a port
(port.py).
"""

from .api import EngineAPI, EngineListener, ReloadResult
from .core import Engine
from .port import KernelPort, LinuxKernel

__all__ = ["Engine", "EngineAPI", "EngineListener", "KernelPort", "LinuxKernel", "ReloadResult"]
