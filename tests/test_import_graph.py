"""The package's import graph has no circle, lazy imports (inside functions) included, and the
layers import only downstream: the report reads files and imports nothing that computes."""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ega_sim"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imported(node: ast.AST, module: str, is_package: bool, known: set[str]) -> list[str]:
    """The ega_sim modules an import statement loads: `from a.b import c` loads a.b.c when c
    is a module, else a.b itself (its __init__)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in known]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:  # relative: resolve against this module's package
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    found = []
    for alias in node.names:
        candidate = f"{target}.{alias.name}"
        if candidate in known:
            found.append(candidate)
        elif target in known:
            found.append(target)
    return found


def import_graph(include_type_checking: bool = False) -> dict[str, set[str]]:
    """Module -> the ega_sim modules it imports anywhere in its body (type-only imports under
    `if TYPE_CHECKING:` left out: they never run)."""
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped: set[int] = set()
        if not include_type_checking:
            for node in ast.walk(tree):
                test = getattr(node, "test", None)
                if isinstance(node, ast.If) and ast.unparse(test).endswith("TYPE_CHECKING"):
                    skipped.update(id(child) for child in ast.walk(node))
        edges = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            edges.update(_imported(node, module, path.name == "__init__.py", known))
        edges.discard(module)
        graph[module] = edges
    return graph


def test_the_graph_sees_lazy_imports():
    graph = import_graph()
    assert len(graph) > 50
    # registry.make_mechanism imports the feed cascade inside a function
    assert any("ega_sim.mechanisms.feed_cascade" in edges for edges in graph.values())


def test_no_import_circle():
    graph = import_graph()
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        pytest.fail(f"import circle: {' -> '.join(error.args[1])}")


TRAINING = {
    "ega_sim.training",
    "ega_sim.logs.simulate",
    "ega_sim.ranking.train",
    "ega_sim.generative.train",
    "ega_sim.generative.pretrain",
    "ega_sim.generative.reward_model_train",
    "ega_sim.generative.alignment",
    "ega_sim.payment.train",
    "ega_sim.payment.fit",
}


def test_the_registry_imports_no_training_code():
    graph = import_graph()
    assert set(graph) >= TRAINING  # the names above are still the training modules
    reached = _reachable(graph, "ega_sim.mechanisms.registry")
    assert "ega_sim.trained_parts" in reached  # trained parts load in one place
    assert not reached & TRAINING, f"the registry reaches {sorted(reached & TRAINING)}"


def test_the_report_imports_nothing_that_computes():
    graph = import_graph()
    assert "ega_sim.report.write" in graph
    reached = _reachable(graph, "ega_sim.report")
    # ega_sim.intervals: plain-Python interval arithmetic the report shares with evaluate;
    # ega_sim.paths: the check that a written path lies inside its folder; ega_sim.lazy: the
    # package's names loaded on first use.
    allowed = ("ega_sim.report", "ega_sim.atomic", "ega_sim.intervals", "ega_sim.paths")
    allowed += ("ega_sim.lazy",)
    outside = sorted(m for m in reached if not m.startswith(allowed))
    assert not outside, f"the report reaches {outside}"


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [m for m in graph if m == start or m.startswith(start + ".")]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph.get(module, ()))
    return seen


HEAVY = ("pandas", "scipy", "matplotlib", "seaborn", "torch._dynamo")
_PROBE = f"""
import sys
def loaded():
    print(' '.join(m for m in {HEAVY!r} if m in sys.modules) or '-')
import ega_sim.cli
loaded()
import ega_sim
ega_sim.evaluate('cascade/vcg', 'textbook', requests=200)
loaded()
import ega_sim.report.stats
loaded()
"""


def test_the_cli_and_a_short_evaluate_import_no_heavy_library():
    """`import ega_sim.cli`, then a small evaluate of a uniform-value scenario, in a fresh
    interpreter load none of pandas, scipy, matplotlib, seaborn, torch._dynamo (lazy imports:
    issue 18); importing the report's statistics then does load pandas (the probe sees it)."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        check=True,
        cwd=PACKAGE.parent,
        env={"OMP_NUM_THREADS": "1", "PATH": ""},
    )
    after_cli, after_evaluate, after_report = done.stdout.split("\n")[:3]
    assert after_cli == "-"
    assert after_evaluate == "-"
    assert "pandas" in after_report.split()
