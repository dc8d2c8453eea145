"""Data pipelines: ingest of source files, provisioning of extracts, synthetic source data."""
