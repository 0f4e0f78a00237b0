"""Compositional evaluation: structured prompts, caption parsing and detector-based metrics.

Plain Python, numpy and (on first bootstrap) scipy; the backend never imports torch: detectors
live in ``training/detectors`` and hand their output here as
:class:`~backend.compositional.metrics.Detection`.

Modules, one job each:

- :mod:`.prompts` — ``ObjectSpec``, ``Relation``, ``StructuredPrompt`` (JSON round trip),
  ``stated_counts`` / ``exact_counts`` (GenEval's exclude idiom for exact counts).
- :mod:`.vocabulary` — the 80 COCO classes with plurals and synonyms, number, colour and spatial
  words (``COCO``, ``DEMO_WORLD``, ``Vocabulary.from_json`` / ``with_classes``).
- :mod:`.extract` — the rule-based caption reader (``extract``, ``explain``, ``Extractor``).
- :mod:`.loaders` — GenEval metadata, COCO captions, our JSONL, plain prompt lists (``load_any``).
- :mod:`.metrics` — SOA-C, SOA-I, CA, PA (detector form), GenEval per image (``score_image``) and
  over a run (``score_detections``) with intervals and the mismatched-prompt baseline.
- :mod:`.intervals` — ``MetricValue``, the bootstrap over prompts, ``cluster_mean`` for metrics
  scored elsewhere, the seeded derangement.
- :mod:`.spatial` — GenEval's relative-position rule, ``swap_spatial_words`` and
  ``pa_clip_success`` (TISE's CLIP form of PA).
- :mod:`.show` — ``prompt_rows``: what a prompt set asks for, for the CLI and the UI.
"""
