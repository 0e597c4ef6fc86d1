"""Imports go one way (shared/STYLE.md habit 8): a lower layer never imports a higher one."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "snnlth"
LAYER = {"errors": 0, "registry": 0, "config": 0, "rng": 0, "presets": 0, "config_io": 1, "snn": 1, "masks": 1,
         "rundir": 1, "parallel": 1,
         "data": 2, "models": 2, "engine": 3, "methods": 4, "report": 4, "export": 4, "adapters": 4, "progress": 4,
         "api": 5, "find": 6, "cli": 6, "sweep": 6, "clidoc": 7,
         "__main__": 7, "__init__": 7}  # the package root is the public facade


def _layer(module: str) -> int:
    return LAYER[module.split(".")[1] if "." in module else module]


def test_imports_point_downwards():
    bad = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        mod = ".".join(rel.parts)
        here = _layer(mod)
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            for name in names:
                if name.startswith("snnlth.") and _layer(name) > here:
                    bad.append(f"{mod} imports {name}")
    assert not bad


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
