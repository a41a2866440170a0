"""The ``engine`` command: ``engine plan CONFIG ...`` (see ``engine.plan``)."""

from __future__ import annotations

import sys
from typing import Optional, Sequence

_COMMANDS = {"plan": "show the run plan of a config before launching it"}


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in _COMMANDS:
        usage = "\n".join(f"  {name:<6} {text}" for name, text in _COMMANDS.items())
        print(f"usage: engine COMMAND ...\n\ncommands:\n{usage}", file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    from engine.plan import main as plan_main  # lazy: heavy (torch, deepspeed), imported only when the command runs

    plan_main(argv[1:])


if __name__ == "__main__":
    main()
