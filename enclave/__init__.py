"""enclave: secure research-data enclave for national health-insurance claims data.

This top-level package owns configuration, the state store, users and roles, the audit log,
keys, projects, billing, the CLI and the JupyterHub integration. Data pipelines live in
``pipelines``, file definitions in ``catalog`` and output checking in ``disclosure_review``.
"""

__version__ = "0.1.0"
