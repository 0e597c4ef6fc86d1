"""Imports go one way (shared/STYLE.md habit 8): a lower layer never imports a higher one."""

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "snnlth"
LAYER = {"errors": 0, "registry": 0, "config": 0, "rng": 0, "presets": 0, "config_io": 1, "snn": 1, "masks": 1,
         "rundir": 1, "parallel": 1, "run_flags": 2,
         "data": 2, "models": 2, "engine": 3, "methods": 4, "report": 4, "export": 4, "adapters": 4, "progress": 4,
         "result": 4, "nir_export": 4, "interchange": 4, "ops": 5, "api": 5, "cluster": 5, "find": 6, "sweep": 6,
         "cli": 7,
         "clidoc": 8, "__main__": 8, "__init__": 8}  # the package root is the public facade
# inside snnlth/snn (the neuron maths): surrogate gradients, then the LIF and the sequence layers, then their fusion
SNN_LAYER = {"surrogate": 0, "neuron": 1, "layers": 1, "fused": 2, "__init__": 3}


def _layer(module: str) -> int:
    return LAYER[module.split(".")[1] if "." in module else "__init__"]


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (getattr(test, "id", None) == "TYPE_CHECKING"
                                         or getattr(test, "attr", None) == "TYPE_CHECKING")


def _imports(path: Path, known: set[str]) -> set[str]:
    """The snnlth modules ``path`` imports, at module level or inside functions, leaving out ``if TYPE_CHECKING``
    blocks; ``from snnlth.x import y`` counts as ``snnlth.x.y`` where that is a module."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking(node):
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("snnlth"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("snnlth"):
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            found.update(subs or {node.module})
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found - {"snnlth"}  # the root facade (its version string) is imported by the CLI alone


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: {i for i in _imports(p, set(mods)) if i in mods and i != m} for m, p in mods.items()}


def test_imports_point_downwards():
    bad = []
    for mod, targets in _graph().items():
        for name in targets:
            if _layer(name) > _layer(mod):
                bad.append(f"{mod} imports {name}")
    assert not bad


def test_snn_is_layered_inside_too():
    bad = []
    for mod, targets in _graph().items():
        if not mod.startswith("snnlth.snn"):
            continue
        here = SNN_LAYER[mod.rsplit(".", 1)[-1] if mod != "snnlth.snn" else "__init__"]
        for name in targets:
            if not name.startswith("snnlth.snn"):
                assert _layer(name) < _layer("snnlth.snn") or name.startswith("snnlth.registry"), f"{mod}: {name}"
            elif SNN_LAYER[name.rsplit(".", 1)[-1] if name != "snnlth.snn" else "__init__"] >= here:
                bad.append(f"{mod} imports {name}")
    assert not bad


def test_no_import_cycles():
    """No module reaches itself through imports (lazy ones in functions included: a cycle is a cycle)."""
    graph = _graph()
    cycles, state = [], {}

    def visit(mod: str, path: list[str]) -> None:
        state[mod] = "open"
        for nxt in sorted(graph[mod]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[mod] = "done"

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [mod])
    assert not cycles


def test_the_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    pkg = tmp_path / "snnlth"
    (pkg / "snn").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "snn" / "__init__.py").write_text("")
    (pkg / "snn" / "neuron.py").write_text("def f():\n    from snnlth.snn.fused import g\n")
    (pkg / "snn" / "fused.py").write_text("from snnlth.snn import neuron\n")
    (pkg / "cli.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import snnlth.snn.fused\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", pkg)
    graph = _graph()
    assert graph["snnlth.snn.neuron"] == {"snnlth.snn.fused"} and graph["snnlth.snn.fused"] == {"snnlth.snn.neuron"}
    assert graph["snnlth.cli"] == set()
    with pytest.raises(AssertionError):
        test_no_import_cycles()


def test_only_cli_prints():
    def prints(path):
        return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"
                   for n in ast.walk(ast.parse(path.read_text())))

    offenders = [p.name for p in SRC.rglob("*.py") if p.name != "cli.py" and prints(p)]
    assert not offenders


def test_report_does_not_import_torch():
    offenders = []
    for path in (SRC / "report").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "torch" or n in (
                "snnlth.rundir.store", "snnlth.engine", "snnlth.models")]
    assert not offenders


def test_only_rundir_builds_paths_inside_a_run():
    """One run store: file names of a run directory appear in snnlth/rundir only (reports and CLI ask it)."""
    files = ("summary.json", "config.json", "metrics.jsonl", "env.json", "checkpoint.pt", "early_time.json",
             "init.pt", "rewind.pt")
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.parent.name == "rundir":
            continue
        tree = ast.parse(path.read_text())
        joined = {id(n.right) for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div)}
        for node in ast.walk(tree):
            # a string constant (either quote, f-string parts too) naming a run file, or a sub-directory of a run
            # joined onto a path (``run / "masks"``); "masks" alone is also a summary key, which is fine
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value.strip("/ ")
                if (text in files or text.startswith(("masks/", "phases/")) or text.endswith(".ckpt.pt")
                        or (text in ("masks", "phases") and id(node) in joined)):
                    offenders.append(f"{path.name}:{node.lineno}: {node.value!r}")
    assert not offenders
