"""Package boundaries the architecture page states (docs/architecture.md), checked on the source.

A package reaches another through its public `__init__` (`from quarch.perf import predict`),
never through a private module (`quarch.perf._predict`): at most 2 exceptions in `quarch/`, each
with a comment on its line saying why. The top-level helpers (`quarch._yaml`, `quarch._checks`,
`quarch._cli_util`, `quarch._lazy`) belong to the root package every subpackage is part of.
"""

from __future__ import annotations

import ast
from pathlib import Path

import quarch

ROOT = Path(quarch.__file__).parent
MAX_PRIVATE_CROSS_IMPORTS = 2


def _imported(node: ast.AST) -> list[str]:
    """Dotted names an import statement reaches (`from m import n` reaches `m` and `m.n`)."""
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    return []


def _is_private_elsewhere(name: str, package: str | None) -> bool:
    parts = name.split(".")
    if parts[0] != "quarch" or len(parts) < 3 or parts[1] in (package, None):
        return False
    if parts[1].startswith("_"):  # a top-level helper module, shared by design
        return False
    return any(p.startswith("_") and not p.startswith("__") for p in parts[2:])


def private_cross_imports() -> list[tuple[Path, int]]:
    """(file, line) of every import of another subpackage's private module, in `quarch/`."""
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        package = rel.parts[0] if len(rel.parts) > 1 else None
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if any(_is_private_elsewhere(n, package) for n in _imported(node)):
                out.append((path, node.lineno))
    return out


def test_the_checker_sees_a_private_cross_import() -> None:
    assert _is_private_elsewhere("quarch.perf._predict", "search")
    assert _is_private_elsewhere("quarch.eval._cli.run_eval", "quant")
    assert not _is_private_elsewhere("quarch.perf", "search")
    assert not _is_private_elsewhere("quarch.search._perf", "search")  # its own package
    assert not _is_private_elsewhere("quarch._yaml.load_yaml_file", "search")


def test_private_cross_package_imports_are_few_and_explained() -> None:
    found = private_cross_imports()
    assert len(found) <= MAX_PRIVATE_CROSS_IMPORTS, found
    for path, line in found:
        text = path.read_text(encoding="utf-8").splitlines()[line - 1]
        assert "#" in text, f"{path}:{line} imports a private module without saying why"
