"""Synthetic NHI source data: raw files exactly as the catalog defines them, with a realistic
population, institutions, claims and orders, optional injected faults with their ground truth,
and opt-out lists. Deterministic for a seed; vectorised and chunked."""

from pipelines.synth.generate import SynthSummary, generate_source

__all__ = ["SynthSummary", "generate_source"]
