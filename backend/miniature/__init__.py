"""The miniature world of issue 12 ("RECAP in miniature"): the groundwork of the experiment.

numpy and PIL only (no torch), one job per module:

- :mod:`.world` — the reduced world (32 px, white, 3 shapes x 4 colours, 1-3 objects on a 3 x 3
  grid): ``Scene`` with exact ground truth, ``sample_scene``, ``render``, ``Scene.structured`` for
  the oracle detector and the compositional metrics, the colours the oracle reads.
- :mod:`.captions` — web-style alt-text with recorded failure modes and a simulated annotator
  writing short and long captions in the guidelines' style, mistakes recorded.
- :mod:`.accuracy` — caption accuracy against the truth: precision and recall of objects,
  colours, counts and positions, with bootstrap intervals over images.
- :mod:`.corpus` — ``build_corpus``: the corpus, its human set and the held-out prompts in a
  workspace, through the ordinary backend APIs.

The plan for the whole experiment is ``docs/miniature.md``.
"""
