"""Print a pip constraints file pinning every dependency of pyproject.toml to its floor.

`python .ci/floor_constraints.py [--extra dev] [--skip torch]` reads `[project].dependencies`
(and the named optional extras), and prints `name==floor` for each `name>=floor`. A runtime
dependency without a `>=` floor is an error: its floor could not be checked. `.ci/floors`
installs the package under these constraints and runs a smoke test, so a floor that the code
has outgrown fails CI.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

# name, optional [extras], then the `>=` floor (other clauses such as `,<3` may follow)
_FLOOR = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9_.-]*)\s*(?:\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)")


def floors(requirements: list[str], *, strict: bool) -> dict[str, str]:
    """`{name: floor}` of requirement strings; a missing floor raises when `strict`."""
    out: dict[str, str] = {}
    for req in requirements:
        match = _FLOOR.match(req)
        if match is None:
            if strict:
                raise ValueError(f"dependency {req!r} has no `>=` floor to check")
            continue
        out[match.group(1).lower()] = match.group(2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    parser.add_argument("--extra", action="append", default=[], help="optional extra to add")
    parser.add_argument("--skip", action="append", default=[], help="dependency to leave out")
    args = parser.parse_args()
    project = tomllib.loads(args.pyproject.read_text(encoding="utf-8"))["project"]
    pins = floors(project["dependencies"], strict=True)
    for extra in args.extra:
        pins |= floors(project["optional-dependencies"][extra], strict=False)
    for name in args.skip:
        pins.pop(name.lower(), None)
    sys.stdout.write("".join(f"{name}=={floor}\n" for name, floor in sorted(pins.items())))


if __name__ == "__main__":
    main()
