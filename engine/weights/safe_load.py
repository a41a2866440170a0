"""Loading checkpoint files without running code from them: one allow-list, one load function.

Why: a ``.pt`` file is a pickle, and unpickling may call any function it names; a crafted file in
a checkpoint folder would run its code the moment someone resumes, inspects or exports the tag.
torch's ``weights_only=True`` unpickler builds only tensors, numbers, strings, lists, tuples,
dicts and the globals it is told are safe. Every load engine performs or triggers goes through
here:

* ``load(path)`` for engine's own reads (per-rank trainer state, EMA, DeepSpeed's model and
  optimizer files when export or inspect read them, ``trainer.weights``);
* ``deepspeed_loads(folder)`` around a DeepSpeed call that loads files itself
  (``engine.load_checkpoint`` on resume, universal loads, ``zero_to_fp32``): DeepSpeed passes
  ``weights_only=False`` explicitly, which ``safe_globals`` alone does not override, so the block
  also sets torch's ``TORCH_FORCE_WEIGHTS_ONLY_LOAD``, which torch reads at every ``torch.load``;
* ``python -m engine.weights.safe_load MODULE ARGS`` runs a DeepSpeed script (the universal
  conversion) in a child process under the same rules.

The allow-list (``ALLOWED``) holds the few non-tensor types DeepSpeed's ``save_checkpoint`` really
writes, found by saving tags at ZeRO 0-3, pipeline, tensor parallel, bf16, offload, GAN and EMA and
scanning every file (``benchmarks/checkpoint_globals.py`` repeats that survey), plus two kinds that
only tags written by earlier engine versions hold: numpy arrays (trainer state files from before RNG
state was stored as tensors) and engine's config node (pipeline tags from before DeepSpeed was given
a plain-dict config). Each entry only rebuilds data; none can call an arbitrary function.

A refused load raises ``UnsafeCheckpointError`` naming the file and the type found. Trusting a
file is an explicit opt-in: ``--trust-checkpoint`` on the training entry and the checkpoint tools,
or ``trust_checkpoints(True)`` in code; then files load with ``weights_only=False`` (a warning is
logged once). There is no fallback from a refused safe load to an unsafe one.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import importlib
import logging
import os
import pickle
import re
import runpy
import sys
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from engine.errors import EngineError

logger = logging.getLogger("engine")

#: how users opt in (every entry point that loads checkpoints accepts it)
TRUST_FLAG = "--trust-checkpoint"
#: exit code of ``python -m engine.weights.safe_load`` when the module it ran had a load refused
REFUSED_EXIT = 3
_FORCE_SAFE_ENV = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
_FORCE_UNSAFE_ENV = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
#: how torch's refusal names the global (not allowed, or from a blocked module such as ``posix``)
_REFUSED_GLOBAL_RE = re.compile(r"GLOBAL (\S+) (?:was not an allowed global|whose module)")


#: The allow-list: the name torch's unpickler reads in a file → (modules to try, attribute) where the
#: object lives. Names, not objects, so that scanning a file needs no import: DeepSpeed is imported
#: only when a file that names one of its types is loaded (it is heavy, and it logs on import).
ALLOWED: Dict[str, Tuple[Tuple[str, ...], str]] = {
    # ZeRO 1-3 and bf16 optimizer files pickle the optimizer's loss scaler object
    "deepspeed.runtime.fp16.loss_scaler.LossScaler": (("deepspeed.runtime.fp16.loss_scaler",), "LossScaler"),
    # the same for fp16 with dynamic scaling (from DeepSpeed's source: fp16 needs a GPU, not surveyed)
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler": (("deepspeed.runtime.fp16.loss_scaler",),
                                                             "DynamicLossScaler"),
    # the ZeRO stage, saved as DeepSpeed's enum
    "deepspeed.runtime.zero.config.ZeroStageEnum": (("deepspeed.runtime.zero.config",), "ZeroStageEnum"),
    # ZeRO 1-2 / bf16 optimizer files: where each parameter lies in the flat partition
    "deepspeed.utils.tensor_fragment.fragment_address": (("deepspeed.utils.tensor_fragment",), "fragment_address"),
    # pipeline tags saved before DeepSpeed was given a plain-dict config: DeepSpeed pickles its
    # config into each file, and it held engine's config node (rebuilt from a plain dict)
    "engine.config.node._rebuild": (("engine.config.node",), "_rebuild"),
    # trainer state files saved before RNG state was stored as tensors: numpy's (tuple, ndarray) state
    "numpy._core.multiarray._reconstruct": (("numpy._core.multiarray", "numpy.core.multiarray"), "_reconstruct"),
    "numpy.core.multiarray._reconstruct": (("numpy._core.multiarray", "numpy.core.multiarray"), "_reconstruct"),
    "numpy.ndarray": (("numpy",), "ndarray"),
    "numpy.dtype": (("numpy",), "dtype"),
    "numpy.dtypes.UInt32DType": (("numpy.dtypes",), "UInt32DType"),
}


@functools.lru_cache(maxsize=None)
def _resolve(name: str) -> Any:
    """The allow-listed object ``name`` stands for, imported on first use."""
    modules, attribute = ALLOWED[name]
    for module in modules:
        try:
            return getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"allow-listed {name} not found in {modules}")


def _safe_globals(names: Optional[Sequence[str]] = None) -> Any:
    """torch's ``safe_globals`` context for the entries ``names`` need (default: every entry).

    Every entry of a package a name belongs to is included, not only the names themselves: the
    static scan misses globals the unpickler reaches indirectly (numpy's dtype classes).
    """
    packages = None if names is None else {name.split(".")[0] for name in names}
    chosen = [name for name in ALLOWED if packages is None or name.split(".")[0] in packages]
    return torch.serialization.safe_globals([(_resolve(name), name) for name in chosen])


_trusted = False
_warned_trust = False


class UnsafeCheckpointError(EngineError):
    """A checkpoint file names a type that is not on the allow-list; nothing from it was run."""

    def __init__(self, path: str, found: Sequence[str]) -> None:
        self.path = path
        self.found = list(found)
        kinds = ", ".join(self.found) if self.found else "an object torch's safe unpickler refuses"
        super().__init__(
            f"checkpoint: refused to load {path}: it contains {kinds}, which is not a tensor, number, string, "
            f"list, dict or one of the types engine and DeepSpeed write; unpickling it could run code, so nothing "
            f"was loaded from it. If you trust this file (you made it, or know where it came from), rerun with {TRUST_FLAG} (training entry, tools/inspect_ckpt.py, "
            f"tools/convert_ckpt.py) to load it with weights_only=False; see docs/checkpoints.md, 'Loading checkpoints safely'")


def trust_checkpoints(trusted: bool) -> None:
    """Set whether checkpoint files are unpickled without the safety check, for this process.

    Args:
        trusted: True only when the user opted in (``--trust-checkpoint``); False restores the default.
    """
    global _trusted, _warned_trust
    if bool(trusted) != _trusted:
        _warned_trust = False  # a new opt-in is said again at its first load (once per opt-in, not per process)
    _trusted = bool(trusted)


def is_trusted() -> bool:
    """Whether the user opted in to loading checkpoints with ``weights_only=False``."""
    return _trusted


def allowed_global_names() -> List[str]:
    """Every allow-listed global as torch's unpickler names it (``module.qualname``)."""
    return list(ALLOWED)


def _warn_trusted(what: str) -> None:
    global _warned_trust
    if not _warned_trust:
        _warned_trust = True
        logger.warning(f"{TRUST_FLAG}: checkpoint files are unpickled with weights_only=False (first: {what}); "
                       "a crafted file can run code: use this only for files you trust")


def _found_in(message: str) -> List[str]:
    """The type names torch's refusal message mentions."""
    return sorted(set(_REFUSED_GLOBAL_RE.findall(message)))


def load(path: str, *, map_location: Any = "cpu", mmap: bool = False) -> Any:
    """``torch.load`` of one checkpoint file with ``weights_only=True`` and the allow-list.

    Args:
        path: the file.
        map_location: as for ``torch.load`` (default: every tensor on the CPU).
        mmap: memory-map the file instead of reading tensor data (zip-format files only).

    Returns:
        The unpickled object.

    Raises:
        UnsafeCheckpointError: the file names a type that is not allowed (unless trusted).
    """
    if _trusted:
        _warn_trusted(path)
        return torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)
    try:
        needed = _non_default_globals(path)
    except (ValueError, RuntimeError):  # torch's legacy (non-zip) format cannot be scanned: allow every entry
        needed = None
    with _safe_globals(needed):
        try:
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
        except pickle.UnpicklingError as exc:
            raise UnsafeCheckpointError(path, _found_in(str(exc))) from None


def unsafe_globals(path: str) -> List[str]:
    """The globals in ``path`` that are neither torch's defaults nor allowed, read statically.

    Nothing is unpickled: torch disassembles the pickle opcodes. Files in torch's legacy
    (non-zip) format cannot be scanned and give an empty list; their load still checks.
    """
    try:
        return sorted(name for name in _non_default_globals(path) if name not in ALLOWED)
    except (ValueError, RuntimeError, OSError):
        return []


def _non_default_globals(path: str) -> List[str]:
    """The globals ``path`` names beyond torch's defaults (static opcode scan, nothing imported)."""
    return torch.serialization.get_unsafe_globals_in_checkpoint(path)


def check_folder(folder: str) -> None:
    """Refuse a checkpoint folder whose ``.pt`` files name types that are not allowed.

    Run before a resume changes any state, so a crafted file is reported with its name, on
    every rank alike (they read the same files), before DeepSpeed loads anything.

    Args:
        folder: a tag folder (searched recursively).

    Raises:
        UnsafeCheckpointError: for the first file found (unless trusted).
    """
    if _trusted:
        return
    for path in sorted(glob.glob(os.path.join(folder, "**", "*.pt"), recursive=True)):
        found = unsafe_globals(path)
        if found:
            raise UnsafeCheckpointError(path, found)


@contextlib.contextmanager
def deepspeed_loads(folder: Optional[str]) -> Iterator[None]:
    """Within the block every ``torch.load`` (DeepSpeed's too) is ``weights_only=True`` with the allow-list.

    Args:
        folder: where the files being loaded live, searched for the refused file when a load is
            refused (DeepSpeed's own exception does not say which file it was reading); None
            when unknown.

    Raises:
        UnsafeCheckpointError: a file was refused (unless trusted).
    """
    if _trusted:
        _warn_trusted(folder)
        yield
        return
    saved = {key: os.environ.pop(key, None) for key in (_FORCE_SAFE_ENV, _FORCE_UNSAFE_ENV)}
    os.environ[_FORCE_SAFE_ENV] = "1"
    try:
        with _safe_globals():
            try:
                yield
            except pickle.UnpicklingError as exc:
                candidates = sorted(glob.glob(os.path.join(folder, "**", "*.pt"), recursive=True)) if folder else []
                culprit = next((p for p in candidates if unsafe_globals(p)), folder or "a file DeepSpeed read")
                raise UnsafeCheckpointError(culprit, _found_in(str(exc))) from None
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value


def child_command(module: str, args: Sequence[str]) -> Tuple[List[str], dict]:
    """(argv, env) that run ``python -m module args`` in a child whose every load is safe (or trusted).

    Args:
        module: the module to run as a script, e.g. ``deepspeed.checkpoint.ds_to_universal``.
        args: its command line.

    Returns:
        The child's argv and the environment changes it needs (engine importable, trust passed on).
    """
    engine_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.pathsep.join(p for p in (engine_parent, os.environ.get("PYTHONPATH", "")) if p)
    argv = [sys.executable, "-m", "engine.weights.safe_load"] + ([TRUST_FLAG] if _trusted else []) + [module, *args]
    return argv, {"PYTHONPATH": path}


def run_module(module: str, argv: Sequence[str], trusted: bool = False) -> None:
    """Run ``module`` as ``__main__`` with ``argv``, every ``torch.load`` in it made safe.

    Args:
        module: the module to run.
        argv: its arguments (``sys.argv[1:]`` as it will see them).
        trusted: the caller's ``--trust-checkpoint``.
    """
    trust_checkpoints(trusted)
    sys.argv = [module, *argv]
    with deepspeed_loads(None):
        runpy.run_module(module, run_name="__main__", alter_sys=True)


def _main(argv: Sequence[str]) -> int:
    args = list(argv)
    trusted = bool(args) and args[0] == TRUST_FLAG
    if trusted:
        args = args[1:]
    if not args:
        print(f"usage: python -m engine.weights.safe_load [{TRUST_FLAG}] MODULE [ARGS...]", file=sys.stderr)
        return 2
    try:
        run_module(args[0], args[1:], trusted)
    except UnsafeCheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return REFUSED_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
