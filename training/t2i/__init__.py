"""Text-to-image fine-tuning of Stable Diffusion pipelines (the ``t2i_train`` job's parts).

Split by job so each piece can be read and tested alone:

* :mod:`training.t2i.pipeline` — resolve the base, load its components, save the result.
* :mod:`training.t2i.text` — caption encoding, truncation counts and 75-token chunking.
* :mod:`training.t2i.latents` — the on-disk cache of VAE latents.
* :mod:`training.t2i.mixdata` — the dataset's images with their captions, per-step batches.
* :mod:`training.t2i.loop` — the training step, checkpoints and validation images.
"""
