"""``make bench``: every benchmark, each printing its ratio against a baseline run alongside."""

from __future__ import annotations

import sys

from . import bench_servicebus, bench_sqlfilter


def main() -> int:
    for module in (bench_sqlfilter, bench_servicebus):
        for line in module.run():
            print(line, flush=True)
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
