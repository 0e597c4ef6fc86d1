"""bench/results_md.py: the claims block of docs/results.md rendered from the JSON of ``bench/claims.py --out``."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("results_md", ROOT / "bench" / "results_md.py")
results_md = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(results_md)

TABLE = ("method     metric       0.00 %        50.00 %\n"
         "IMP        accuracy %   78.38 ± 0.39  79.03 ± 0.42\n"
         "IMP        search time  0.0 s         36.7 s\n"
         "IMP+ET     accuracy %   78.21 ± 0.85 †  78.43 ± 0.72\n"
         "IMP+ET vs IMP  speed-up  –           1.30×")
RATIOS = ("time ratios, method over base, per level (columns: % of the prunable weights):\n"
          "pair           time ratio        0.00 %  50.00 %\n"
          "IMP+ET vs IMP  search            –       0.77×\n"
          "IMP+ET vs IMP  + final training  –       0.85×")
CLAIMS = [{"claim": "winning ticket: IMP at >= 89 % within 1.0 point of dense", "holds": True,
           "detail": "dense 78.38 ± 0.39; IMP at 93.75 % 77.88 ± 0.22 (gap +0.50)"},
          {"claim": "Early-Bird far cheaper than IMP at moderate sparsity", "holds": False,
           "detail": "EB/IMP search time 50.00 %: 1.11 | 75.00 %: 0.54"}]
# what bench/claims.py prints for CLAIMS, in every version of it
PRINTED_CLAIMS = ("claims:\n"
                  "  [holds] winning ticket: IMP at >= 89 % within 1.0 point of dense\n"
                  "          dense 78.38 ± 0.39; IMP at 93.75 % 77.88 ± 0.22 (gap +0.50)\n"
                  "  [FAILS] Early-Bird far cheaper than IMP at moderate sparsity\n"
                  "          EB/IMP search time 50.00 %: 1.11 | 75.00 %: 0.54")
OLDER_KEYS = ("table_text", "time_ratio_text", "claims_text", "time_ratios", "run_order")  # new in one version


def claims_data(**changes) -> dict:
    """A small claims JSON with the keys bench/claims.py writes."""
    data = {"preset": {"name": "quick", "epochs": 4}, "seeds": [0, 1],
            "machine": {"cpu": "Test CPU", "cores": 2, "torch_threads": 2, "torch": "2.13.0"},
            "round_stop_settings": "defaults", "run_order": {"0": ["IMP", "random", "reinit", "IMP+ET"]},
            "methods": {"IMP": {"levels": []}}, "round_stop": {}, "dense_mean": 78.38, "winning_ticket_gap": 0.5,
            "et_time_ratio_imp": 0.67, "claims": CLAIMS, "table_text": TABLE, "time_ratio_text": RATIOS,
            "claims_text": PRINTED_CLAIMS,
            "time_ratios": {"IMP+ET vs IMP": {"50.00": {"search": 0.77, "with_final_training": 0.85}}},
            "runs": [], "elapsed_seconds": 594.0}
    data.update(changes)
    return data


def write_json(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "claims.json"
    path.write_text(json.dumps(data))
    return path


def page(body: str) -> str:
    return (f"# Results\n\nhand-written intro\n\n{results_md.BEGIN}\n\n{body}\n\n{results_md.END}\n\n"
            "hand-written outro\n")


def fenced(text: str) -> str:
    return f"```text\n{text}\n```"


def test_claims_text_is_the_printed_form():
    assert results_md.claims_text(CLAIMS) == PRINTED_CLAIMS
    assert results_md.claims_text([]) == "claims:"


def test_render_keeps_the_printed_text_verbatim_in_order():
    block = results_md.render(claims_data())
    assert block.startswith(results_md.BEGIN + "\n\n") and block.endswith("\n\n" + results_md.END)
    positions = [block.index(fenced(text)) for text in (TABLE, RATIOS, PRINTED_CLAIMS)]
    assert positions == sorted(positions)
    assert "Not in this JSON" not in block


def test_render_status_words_are_the_scripts():
    block = results_md.render(claims_data())
    status = [line.split("]")[0].strip() + "]" for line in block.splitlines() if line.startswith("  [")]
    assert status == ["[holds]", "[FAILS]"]
    assert "partly" not in block


def test_render_prefers_the_printed_claims_text():
    block = results_md.render(claims_data(claims_text="claims:\n  [FAILS] as printed then\n          1.00"))
    assert fenced("claims:\n  [FAILS] as printed then\n          1.00") in block
    assert PRINTED_CLAIMS not in block


def test_render_names_the_run():
    first = results_md.render(claims_data()).split("\n\n")[1]
    assert first == ("`bench/claims.py` printed (quick preset; seeds 0, 1; 9.9 min; Test CPU; 2 cores; torch 2.13.0; "
                     "2 threads):")
    bare = results_md.render({"claims": CLAIMS}).split("\n\n")[1]
    assert bare == "`bench/claims.py` printed:"


def test_render_a_json_of_an_older_claims_py():
    data = {k: v for k, v in claims_data().items() if k not in OLDER_KEYS}
    block = results_md.render(data)
    assert fenced(PRINTED_CLAIMS) in block  # its claims, in the form that version printed too
    notes = [line for line in block.splitlines() if line.startswith("*Not in this JSON")]
    assert len(notes) == 2
    assert "the Table-1 text" in notes[0] and "the time ratios at every level" in notes[1]
    assert all(results_md.RERUN in n for n in notes)
    assert TABLE not in block and RATIOS not in block


@pytest.mark.parametrize("data", [{}, {"claims": "none"}, {"claims": [{"claim": "c", "holds": True}]}, [1, 2]])
def test_render_refuses_what_is_not_a_claims_json(data):
    with pytest.raises(results_md.RenderError, match="claims"):
        results_md.render(data)


def test_main_rewrites_the_block_and_keeps_the_page_around_it(tmp_path):
    md = tmp_path / "results.md"
    md.write_text(page("old table\n\n| claim | measured | holds |\n| a | b | partly |"))
    md.chmod(0o644)
    assert results_md.main([str(write_json(tmp_path, claims_data())), str(md)]) == 0
    text = md.read_text()
    assert text == ("# Results\n\nhand-written intro\n\n" + results_md.render(claims_data())
                    + "\n\nhand-written outro\n")
    assert md.stat().st_mode & 0o777 == 0o644
    assert not list(tmp_path.glob(".results.md.*"))  # the tmp file of the atomic write is gone


def test_check_detects_a_difference_and_passes_once_rewritten(tmp_path, capsys):
    md, js = tmp_path / "results.md", write_json(tmp_path, claims_data())
    md.write_text(page("stale"))
    before = md.read_text()
    assert results_md.main([str(js), str(md), "--check"]) == 1
    assert md.read_text() == before  # --check writes nothing
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "differs" in err
    assert results_md.main([str(js), str(md)]) == 0
    assert results_md.main([str(js), str(md), "--check"]) == 0
    assert results_md.main([str(js), str(md)]) == 0
    assert "already up to date" in capsys.readouterr().out


@pytest.mark.parametrize("body", ["# Results\n\nno block here\n",
                                  f"{results_md.END}\n\n{results_md.BEGIN}\n",
                                  f"{results_md.BEGIN}\n{results_md.BEGIN}\n{results_md.END}\n"])
def test_a_page_without_one_block_is_an_error(tmp_path, capsys, body):
    md = tmp_path / "results.md"
    md.write_text(body)
    assert results_md.main([str(write_json(tmp_path, claims_data())), str(md)]) == 2
    assert "generated block" in capsys.readouterr().err
    assert md.read_text() == body


def test_a_json_that_is_not_json_is_an_error(tmp_path, capsys):
    md, js = tmp_path / "results.md", tmp_path / "claims.json"
    md.write_text(page("x"))
    js.write_text("{not json")
    assert results_md.main([str(js), str(md)]) == 2
    assert capsys.readouterr().err.startswith("results_md: ")


def test_docs_results_block_is_the_rendering_of_docs_claims_json():
    js = ROOT / "docs/claims.json"
    assert js.is_file(), ("docs/claims.json is missing: run `python bench/claims.py --out docs/claims.json`, then "
                          "`python bench/results_md.py docs/claims.json docs/results.md`")
    text = (ROOT / "docs/results.md").read_text(encoding="utf-8")
    block = results_md.render(json.loads(js.read_text(encoding="utf-8")))
    assert results_md.splice(text, block) == text, \
        "docs/results.md differs from docs/claims.json: run python bench/results_md.py docs/claims.json docs/results.md"
