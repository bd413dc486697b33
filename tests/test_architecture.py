"""The package's import layers (declared in ``pyproject.toml``, ``[tool.fastconv.layers]``) hold.

Every ``import`` / ``from ... import`` of a ``fastconv`` module anywhere in a ``fastconv`` source file (inside
functions too) is an edge.  An edge to a higher layer fails, and so does any cycle among modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fastconv"


def _layers() -> list[list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["fastconv"]["layers"]["order"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """The fastconv modules ``path`` imports (``from pkg import name`` counts as ``pkg.name`` when that is a
    module, else as ``pkg``)."""
    mod = _module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "fastconv")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "fastconv":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if _exists(sub) else target)
    found.discard(mod)
    return found


def _exists(module: str) -> bool:
    rel = Path(*module.split("."))
    return (ROOT / rel).with_suffix(".py").exists() or (ROOT / rel / "__init__.py").exists()


def _layer_of(module: str, layers: list[list[str]]) -> int:
    best, best_len = None, -1
    for i, prefixes in enumerate(layers):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    if best is None:
        raise AssertionError(f"{module} is in no layer of pyproject.toml's [tool.fastconv.layers]")
    return best


def _graph() -> dict[str, set[str]]:
    return {_module_name(f): _imports(f) for f in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_layer():
    layers = _layers()
    for mod in _graph():
        _layer_of(mod, layers)


def test_imports_point_down_the_layers():
    layers = _layers()
    upward = []
    for mod, deps in _graph().items():
        for dep in deps:
            if _layer_of(dep, layers) > _layer_of(mod, layers):
                upward.append(f"{mod} (layer {_layer_of(mod, layers)}) imports {dep} "
                              f"(layer {_layer_of(dep, layers)})")
    assert not upward, "upward imports:\n" + "\n".join(sorted(upward))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    # a package's __init__ re-exporting its submodules is not a cycle with them: edges from a package to its
    # own submodules are the package's public surface, edges back from submodules to the package are not
    graph = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in _graph().items()}
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("edge, fails", [
    (("fastconv.kernels.igemm", "fastconv.tuning.autotuner"), True),  # upward
    (("fastconv.bench.runner", "fastconv.kernels.igemm"), False),  # downward
])
def test_the_check_can_fail(edge, fails):
    """The rule itself: a planted upward edge is caught, a downward one is not."""
    layers = _layers()
    src, dst = edge
    assert (_layer_of(dst, layers) > _layer_of(src, layers)) is fails
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
