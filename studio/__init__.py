"""RECAP Studio's user interface (Gradio, one module per tab) and command line.

The studio imports ``backend`` only: never ``training`` or torch. Model work runs in job
subprocesses so the UI starts fast and survives a crashed job.
"""
