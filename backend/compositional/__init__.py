"""Compositional evaluation: structured prompts, caption parsing and detector-based metrics.

Plain Python and numpy only (the backend never imports torch): detectors live in
``training/detectors`` and hand their output here as :class:`~backend.compositional.metrics.Detection`.
"""
