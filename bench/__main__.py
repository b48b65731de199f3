"""``python -m bench``: the benchmark suite (bench/suite.py) or the fault runs (bench/faults.py).

    python -m bench [--quick] [--only ROWS]      the benchmark table (also: python -m bench run)
    python -m bench faults ...                   fault injection (bench/faults.py)
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "faults":
        from bench.faults import main as faults_main

        sys.argv = [f"{sys.argv[0]} faults", *args[1:]]
        return int(faults_main() or 0)
    if args and args[0] == "run":
        args = args[1:]
    from bench.suite import main as suite_main

    return suite_main(args)


if __name__ == "__main__":
    sys.exit(main())
