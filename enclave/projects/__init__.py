"""Research projects: applications, steward review, lifecycle, changes and closure hooks.

:mod:`enclave.projects.service` is the one Python API that the CLI and the web portal call.
"""
