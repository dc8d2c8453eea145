"""``python -m enclave`` runs the CLI."""

from enclave.cli import main

main()
