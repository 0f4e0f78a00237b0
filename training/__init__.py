"""Model work for RECAP Studio: captioner adapters, fine-tuning, recaptioning, tiny offline models.

This package runs inside job subprocesses (``python -m training.runner RUN_ID``) so that the
studio UI never imports torch. It may import :mod:`backend`, never :mod:`studio`.
"""
