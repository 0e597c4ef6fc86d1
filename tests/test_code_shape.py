"""The shape of the code (issue: one search core): no function in src/ longer than 60 lines or with more than 8
parameters; small typed objects carry what would be a long list of arguments."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "snnlth"
MAX_LINES, MAX_PARAMS = 60, 8


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _params(fn: ast.FunctionDef) -> int:
    a = fn.args
    names = [*a.posonlyargs, *a.args, *a.kwonlyargs]
    if names and names[0].arg in ("self", "cls", "ctx"):
        names = names[1:]  # the receiver (ctx: an autograd Function's) is no parameter a caller passes
    return len(names) + (a.vararg is not None) + (a.kwarg is not None)


def offenders(root: Path = SRC) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        for fn in _functions(ast.parse(path.read_text())):
            lines = fn.end_lineno - fn.lineno + 1
            if lines > MAX_LINES or _params(fn) > MAX_PARAMS:
                bad.append(f"{path.relative_to(root)}:{fn.lineno} {fn.name}: {lines} lines, {_params(fn)} params")
    return bad


def test_no_long_function_and_no_long_parameter_list():
    assert offenders() == []


def test_the_checker_sees_both(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    (tmp_path / "m.py").write_text(f"def long():\n{body}\n\n\ndef wide(a, b, c, d, e, f, g, h, *, i):\n    pass\n\n\n"
                                   "class K:\n    def ok(self, a, b, c, d, e, f, g, h):\n        pass\n")
    assert [o.split(":")[1].split()[1] for o in offenders(tmp_path)] == ["long", "wide"]
