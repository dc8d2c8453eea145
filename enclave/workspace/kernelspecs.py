"""The kernel specs a workspace server offers: the installation's, and no other.

jupyter_client looks for kernel specs in every Jupyter data folder, the user's included, and
in IPython's folder; in the sandbox both are folders the kernel can write, so a kernel could
add a spec (whose files the server would then serve, and whose command it would run). Its
``kernel_dirs`` is not configurable, hence this subclass, named by the workspace's root-owned
server configuration.
"""

from __future__ import annotations

import os
import sys

from jupyter_client.kernelspec import KernelSpecManager


class InstalledKernelSpecManager(KernelSpecManager):
    """Kernel specs from ``<sys.prefix>/share/jupyter/kernels`` only (plus ipykernel's own)."""

    def _kernel_dirs_default(self) -> list[str]:
        return [os.path.join(sys.prefix, "share", "jupyter", "kernels")]
