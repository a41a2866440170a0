"""Reading weight files safely, under model/ (pretrained weights) and checkpoint/ (resume, export).

``engine.weights.safe_load`` unpickles every file with ``weights_only=True`` and an allow-list;
``engine.weights.exported`` reads what ``tools/convert_ckpt.py`` wrote; ``engine.weights.pretrained``
puts a state dict into a network or a DeepSpeed engine (``trainer.weights``).
"""
