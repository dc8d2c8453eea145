"""The notebook hub: JupyterHub integration for the on-site workspace (DESIGN §5).

Owns the generated JupyterHub configuration, the Authenticator (enclave users, roles, active
projects, TOTP, on-site networks), the Spawner (one Unix user, network namespace, mount view,
cgroup and scratch quota per server), the TCP↔Unix-socket bridges the proxy and the servers
talk through, opening hours and quotas, overnight runs, and usage posted to billing.
"""
