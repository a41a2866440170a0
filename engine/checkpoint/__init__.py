"""Checkpoints: crash-safe save, exact resume, pretrained weights.

Owner: ``engine.checkpoint.checkpointer.Checkpointer`` (``trainer.checkpoint``): root, tags,
rotation, sync group, the save in flight, the RNG hand-off on resume, the ``best`` tag.
Layout and completeness: see ``engine.checkpoint.layout``. Save: ``CheckpointHook``
(``engine.checkpoint.hook``), ``BestCheckpointHook`` (``engine.checkpoint.best``), the save
sequence in ``engine.checkpoint.saver``; asynchronous saves write through
``engine.checkpoint.async_writer``; signals and trigger files that ask for a save (and a stop)
are ``engine.checkpoint.preempt``. Resume: ``engine.checkpoint.resume``. ZeRO tags are read for
export by ``engine.checkpoint.zero_stream``.
Export: ``tools/convert_ckpt.py`` over ``engine.checkpoint.export`` (dtype, format, Hugging Face
shards + index, tied parameters once, lazy ZeRO-3 reads). Inspect: ``tools/inspect_ckpt.py``.
Every file is unpickled through ``engine.weights.safe_load`` (``weights_only=True`` and an
allow-list, DeepSpeed's own loads included); ``--trust-checkpoint`` is the explicit opt-out.

Why resume is exact: the sampler's position is a number (``steps × train_per_batch``) and
per-sample augmentation seeds derive from it, DeepSpeed restores weights, optimizer and LR
scheduler, and each rank restores its own python/numpy/torch(/cuda) RNG from its own file
(DeepSpeed's ``client_state`` comes back from rank 0's file only), after ``iter(loader)``.

A save entered on only some ranks: DeepSpeed's ``save_checkpoint`` starts with a barrier on
the main group (gloo default timeout 30 min; NCCL may hang for good). Before it, every rank
all-gathers the tag on a gloo side group created with a short timeout
(``ENGINE_CKPT_SYNC_TIMEOUT``, default 300 s) by ``Checkpointer.start`` (the hooks' ``before_train``). gloo honours
per-group timeouts, so a lone rank gets a RuntimeError after the timeout, turned into a message
(measured: about 3 s plus start-up with a 3 s timeout). ``monitored_barrier`` would name the
missing ranks but only on rank 0 and gloo only; the side group works whatever the main backend.

A different world size on resume (``engine.checkpoint.universal``): the tag's ZeRO engine
folders are converted once by rank 0 with DeepSpeed's ``ds_to_universal`` into
``<tag>/universal/`` (temp dir + rename; the tag's own files are only read) and loaded with
``checkpoint.load_universal`` switched on for that call; ZeRO-0 folders load as they are. The
iteration is kept, the sampler goes on from the global sample index re-divided over the new
ranks, RNG streams are reseeded from (seed, rank, step) (not bit-exact across world sizes),
and the EMA is carried over (ZeRO-3 shards re-cut) or restarted from the weights with a warning.
"""
