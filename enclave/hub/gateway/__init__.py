"""The workspace gateway: the root-run enforcement point between the proxy and a researcher's server."""
