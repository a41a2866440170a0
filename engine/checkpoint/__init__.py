"""Checkpoints: crash-safe save, exact resume, pretrained weights.

Layout and completeness: see ``engine.checkpoint.layout``. Save: ``CheckpointHook`` /
``save_checkpoint`` in ``engine.checkpoint.saver``. Resume: ``engine.checkpoint.resume``.
Export: ``tools/convert_ckpt.py``.

Why resume is exact: the sampler's position is a number (``steps × train_per_batch``) and
per-sample augmentation seeds derive from it, DeepSpeed restores weights, optimizer and LR
scheduler, and each rank restores its own python/numpy/torch(/cuda) RNG from its own file
(DeepSpeed's ``client_state`` comes back from rank 0's file only), after ``iter(loader)``.

A save entered on only some ranks: DeepSpeed's ``save_checkpoint`` starts with a barrier on
the main group (gloo default timeout 30 min; NCCL may hang for good). Before it, every rank
all-gathers the tag on a gloo side group created with a short timeout
(``ENGINE_CKPT_SYNC_TIMEOUT``, default 300 s) in ``CheckpointHook.before_train``. gloo honours
per-group timeouts, so a lone rank gets a RuntimeError after the timeout, turned into a message
(measured: about 3 s plus start-up with a 3 s timeout). ``monitored_barrier`` would name the
missing ranks but only on rank 0 and gloo only; the side group works whatever the main backend.

Not supported yet: resuming with a different world size (DeepSpeed's universal checkpoint,
``ds_to_universal`` + ``checkpoint.load_universal``); resume refuses it with a message.
"""
