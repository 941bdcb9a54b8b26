"""The package's layers: no import circle, and no import (even a lazy one inside a function) that runs back up from
a lower layer to a higher one. The layers follow the data flow: spec -> export / derive -> artifact -> runner ->
parity / latency -> report -> CLI."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "edgeseq"

# lowest first; a module may import its own layer and the ones below it
LAYERS = [
    ("base", ["_version", "_lazy", "_quiet", "_checks", "enums", "errors", "tensors", "environment", "inputs", "tomlfile"]),
    ("records", ["artifact", "runner", "timesteps", "parity", "latency", "quantize", "devices", "models", "kernels"]),
    ("formats", ["formats", "remote"]),
    ("services", ["resolve", "bisection", "stage_profile", "streaming", "padding", "report"]),
    ("jobs", ["plan", "matrix", "recipe", "api"]),
    ("front", ["cli", "__init__", "__main__"]),
]
RANK = {name: rank for rank, (_, names) in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """edgeseq modules this file imports (absolute dotted names)."""
    tree = ast.parse(path.read_text())
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # `if TYPE_CHECKING:` blocks never run
        nodes = [n for n in nodes if not (isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test))]
    out = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("edgeseq"):
                continue
            out.add(mod)
            for alias in node.names:  # `from . import formats` imports a module
                candidate = f"{mod}.{alias.name}"
                if (ROOT.parent / candidate.replace(".", "/")).with_suffix(".py").is_file() or \
                        (ROOT.parent / candidate.replace(".", "/")).is_dir():
                    out.add(candidate)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("edgeseq")}
    return out


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _rank(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    return RANK[top]


def test_every_module_has_a_layer():
    assert [m for m in _modules() if m != "edgeseq" and m.split(".")[1] not in RANK] == []


def test_no_import_runs_back_up_the_layers():
    offenders = []
    for module, path in sorted(_modules().items()):
        if module == "edgeseq":
            continue
        for imported in sorted(_imports(path, top_level_only=False)):
            if imported != "edgeseq" and _rank(imported) > _rank(module):
                offenders.append(f"{module} -> {imported}")
    assert offenders == []


def test_no_import_circle_at_module_level():
    modules = _modules()
    graph = {m: {i for i in _imports(p, top_level_only=True) if i in modules and i != m} for m, p in modules.items()}
    for module in graph:  # importing a package runs its __init__: a submodule's import of its parent is no edge
        graph[module] = {i for i in graph[module] if not module.startswith(i + ".")}
    seen, stack, cycles = set(), [], []

    def visit(node):
        if node in stack:
            cycles.append(" -> ".join(stack[stack.index(node):] + [node]))
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        stack.pop()

    for module in sorted(graph):
        visit(module)
    assert cycles == []
