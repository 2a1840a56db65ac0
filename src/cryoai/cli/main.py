"""The ``cryoai`` command: one sub-command per module in ``cryoai.cli``.

Each sub-command module has a docstring (its ``--help``), ``add_args(parser)`` and
``main(args)``. Bad input raises ``InputError``, printed here as one line, exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cryoai import __version__
from cryoai.errors import InputError

# sub-command name → module; imported only when that command runs (fast start-up).
COMMANDS: dict[str, str] = {
    "example": "cryoai.cli.example",
    "simulate": "cryoai.cli.simulate",
    "check-inputs": "cryoai.cli.check_inputs",
    "preprocess": "cryoai.cli.preprocess",
    "train": "cryoai.cli.train",
    "predict": "cryoai.cli.predict",
    "fsc": "cryoai.cli.fsc",
    "evaluate": "cryoai.cli.evaluate",
    "flip-hand": "cryoai.cli.flip_hand",
    "align-symmetry": "cryoai.cli.align_symmetry",
    "report": "cryoai.cli.report",
}


def _summary(module_name: str) -> str:
    module = importlib.import_module(module_name)
    return (module.__doc__ or "").strip().splitlines()[0]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(f"cryoai {__version__}: amortized ab initio cryo-EM reconstruction\n\nsub-commands:")
        for name, module_name in COMMANDS.items():
            print(f"  {name:14s} {_summary(module_name)}")
        print("\n`cryoai COMMAND --help` describes each.")
        return 0
    if argv[0] == "--version":
        print(__version__)
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"error: unknown sub-command {name!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name])
    parser = argparse.ArgumentParser(
        prog=f"cryoai {name}",
        description=module.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_args(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.main(args) or 0)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
