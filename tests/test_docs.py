"""Every code block of README.md and docs/ runs, page by page, in a fresh interpreter and an empty directory, on a
tiny Fashion-MNIST written in the real IDX format ($SNNLTH_DATA): ``python`` blocks are executed in order in one
script per page, each ``sh`` command line through the real CLI (``snnlth`` / ``python -m snnlth``), ``toml`` blocks
are loaded as search configs. Installation lines (``pip``, ``make``, ``python3 -m venv``) are what CI itself runs
through ``make test``; they are listed in SETUP and skipped, and any other kind of line fails the test. ``text``
blocks are output and listings. The CLI reference in docs/cli.md must equal what the code generates."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from snnlth.clidoc import reference, splice
from tests.helpers import make_fmnist

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
KINDS = {"python", "sh", "toml", "text"}
SETUP = ("pip ", "make ", "python3 -m venv ", ". .venv/bin/activate")
CLI = ("snnlth ", "python -m snnlth ")
LOOP = "for "  # a shell loop over snnlth commands, run by bash


def blocks(page: Path) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(page.read_text())]


def shell_commands(code: str) -> list[str]:
    """Command lines of an ``sh`` block: continuations joined, comments dropped, ``a && b`` split."""
    joined = re.sub(r"\\\n\s*", " ", code)
    out = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            out += [part.strip() for part in line.split("&&")]
    return out


def page_script(page: Path) -> str:
    """One Python script doing what the page shows, in order."""
    lines = ["import subprocess, sys", "from snnlth.config_io import config_from_dict, load_toml",
             "from snnlth.config import SearchRunConfig"]
    for n, (kind, code) in enumerate(blocks(page)):
        if kind == "python":
            lines.append(code)
        elif kind == "toml":
            path = f"block_{n}.toml"
            lines += [f"open({path!r}, 'w').write({code!r})",
                      f"config_from_dict(SearchRunConfig, load_toml({path!r}))"]
        elif kind == "sh":
            for cmd in shell_commands(code):
                if cmd.startswith(SETUP):
                    continue
                if cmd.startswith(LOOP) and "snnlth " in cmd:
                    lines.append(f"assert subprocess.run(['bash', '-c', {cmd!r}]).returncode == 0, {cmd!r}")
                    continue
                assert cmd.startswith(CLI), f"{page.name}: a shell line the docs test cannot run: {cmd!r}"
                args = shlex.split(cmd)[1:] if cmd.startswith("snnlth ") else shlex.split(cmd)[3:]
                lines.append(f"rc = subprocess.run([sys.executable, '-m', 'snnlth', *{args!r}, '--no-progress']"
                             f" if {args[0]!r} in ('search', 'train') else [sys.executable, '-m', 'snnlth', *{args!r}]"
                             f").returncode\nassert rc == 0, {cmd!r}")
    return "\n".join(lines) + "\n"


def test_every_block_is_of_a_known_kind():
    odd = [f"{p.name}: ```{kind}" for p in PAGES for kind, _ in blocks(p) if kind not in KINDS]
    assert not odd


def test_the_cli_reference_is_what_the_code_generates():
    page = (ROOT / "docs" / "cli.md").read_text()
    assert splice(page, reference()) == page, "docs/cli.md drifted: run python -m snnlth.clidoc --write docs/cli.md"


@pytest.fixture(scope="module")
def tiny_fmnist(tmp_path_factory):
    return make_fmnist(tmp_path_factory.mktemp("fmnist"), n_train=1000, n_test=500)


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if any(k in ("python", "sh", "toml") for k, _ in blocks(p))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_page_runs(page, tiny_fmnist, tmp_path):
    script = tmp_path / "page.py"
    script.write_text(page_script(page))
    env = {"SNNLTH_DATA": str(tiny_fmnist), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
           "OMP_NUM_THREADS": "2", "HOME": str(tmp_path), "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def test_readme_stays_short_and_for_outside_users():
    """At most 1,000 words: what it does, install, the two commands, one CLI and one Python example, the headline
    numbers; the reference lives in docs/."""
    text = (ROOT / "README.md").read_text()
    assert len(text.split()) <= 1000
    assert "make demo" in text and "make test" in text and "```python" in text and "snnlth search" in text
    assert not any(phrase in text.lower() for phrase in ("this machine", "these sessions", "this session"))
