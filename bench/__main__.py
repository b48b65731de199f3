"""``python -m bench``: the benchmark suite (bench/suite.py) or the fault runs (bench/faults.py).

    python -m bench [--quick] [--only ROWS]      the benchmark table (also: python -m bench run)
    python -m bench faults ...                   fault injection (bench/faults.py)
    python -m bench clinical [--seed N]          the rules on synthetic patient weeks
"""

from __future__ import annotations

import importlib
import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "faults":
        faults = importlib.import_module("bench.faults")  # another engineer's module
        sys.argv = [f"{sys.argv[0]} faults", *args[1:]]
        return int(faults.main() or 0)
    if args and args[0] == "clinical":
        from bench.clinical import main as clinical_main

        return clinical_main(args[1:])
    if args and args[0] == "run":
        args = args[1:]
    from bench.suite import main as suite_main

    return suite_main(args)


if __name__ == "__main__":
    sys.exit(main())
