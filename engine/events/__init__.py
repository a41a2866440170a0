"""The floor under log/, loss/, checkpoint/ and trainer/: the hook protocol and the event storage.

``engine.events.hooks`` (``HookBase``, ``PeriodicHook``), ``engine.events.storage``
(``EventStorage``, ``put_scalar``, ``put_image``), ``engine.events.window`` (``StepWindow``,
``reduce_mean``) and ``engine.events.step`` (``StepResult``, what a micro-step returns) import nothing of engine above ``comm`` and ``utils``, so every package that
writes events or hooks into the loop can use them without importing the trainer.
"""
