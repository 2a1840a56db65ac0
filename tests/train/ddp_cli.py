"""`python -m cryoai ARGS` for tests/train/test_distributed.py, which then checks that the rank left no
process group behind: torchrun --nproc_per_node 2 tests/ddp_cli.py train …

A group still alive when the interpreter exits has its gloo threads torn down during
finalisation, which now and then aborts the rank ("terminate called without an active
exception") after all its work is done. Exit code 3 and a line on stderr say it happened.
"""

import faulthandler
import os
import sys
from pathlib import Path

from cryoai.cli.main import main


def gloo_threads() -> list[str]:
    """Names of this process's threads that belong to gloo (Linux /proc; empty elsewhere)."""
    tasks = Path("/proc/self/task")
    names = [(t / "comm").read_text().strip() for t in tasks.iterdir()] if tasks.is_dir() else []
    return [n for n in names if "gloo" in n]


if __name__ == "__main__":
    faulthandler.dump_traceback_later(90, exit=True)  # a hung rank prints its stacks (tests/train/test_distributed.py shows them)
    code = main(sys.argv[1:])
    left = gloo_threads()
    if left:
        print(f"rank {os.environ.get('RANK')}: process group still alive after the command: {left}", file=sys.stderr)
        sys.exit(3)
    sys.exit(code)
