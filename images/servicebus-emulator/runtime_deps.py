"""Print the project's runtime dependencies (pyproject.toml [project].dependencies), one a line.

Used by the emulator image's Dockerfile: ``pip install $(python3 runtime_deps.py pyproject.toml
--without azure-servicebus)``. ``--without`` drops a distribution the emulator never imports
(the SDK is the project's client, not part of the emulator).
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path


def distribution(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def runtime_dependencies(pyproject: Path, without: list[str] = ()) -> list[str]:
    """[project].dependencies minus the distributions named in ``without``."""
    data = tomllib.loads(pyproject.read_text())
    dropped = {distribution(name) for name in without}
    return [r for r in data["project"]["dependencies"] if distribution(r) not in dropped]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", type=Path)
    parser.add_argument("--without", action="append", default=[])
    args = parser.parse_args(argv)
    print("\n".join(runtime_dependencies(args.pyproject, args.without)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
