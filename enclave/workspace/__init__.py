"""The researcher's workspace: single-user server settings, the Jupyter server extension that
blocks every way out but the export request, the root-run export service and the notebook
templates copied into each new workspace (issue 7, workspace side).

The hub side (authentication, spawning, namespaces, quotas, billing) lives in
:mod:`enclave.hub`; the kernel-side library is :mod:`enclave.toolkit`.
"""
