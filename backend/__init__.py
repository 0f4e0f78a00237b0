"""Backend of RECAP Studio: workspace, database, storage, ingestion, annotation, statistics, export.

Nothing in this package imports torch or a model library: model work runs in job
subprocesses from ``training/`` so the studio starts fast and survives a crashed job.
"""
