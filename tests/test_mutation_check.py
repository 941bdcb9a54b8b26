"""tools/mutation_check.py's list stays in step with the code: every mutant's snippet is found exactly once and every
test it names exists. (The mutants themselves run from the tool, not from the test suite.)"""

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("mutation_check", ROOT / "tools" / "mutation_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("mutation_check", module)  # its dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


TOOL = _tool()


def _test_names(path: Path) -> set[str]:
    return {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)}


@pytest.mark.parametrize("mutant", TOOL.MUTANTS, ids=lambda m: m.name)
def test_each_snippet_is_found_exactly_once(mutant):
    assert (ROOT / mutant.file).is_file(), mutant.file
    assert TOOL.snippet_count(mutant) == 1, f"{mutant.name}: stale, update its snippet in tools/mutation_check.py"
    assert mutant.find != mutant.replace


@pytest.mark.parametrize("mutant", TOOL.MUTANTS, ids=lambda m: m.name)
def test_each_named_test_exists(mutant):
    assert mutant.tests
    for test in mutant.tests:
        path, _, name = test.partition("::")
        assert (ROOT / path).is_file(), test
        assert not name or name.split("[")[0] in _test_names(ROOT / path), f"{mutant.name}: no test {test}"


def test_the_list_is_the_curated_one():
    names = [m.name for m in TOOL.MUTANTS]
    assert len(names) == len(set(names)) and len(names) >= 26
    assert {m.file for m in TOOL.MUTANTS} >= {"edgeseq/parity.py", "edgeseq/latency.py", "edgeseq/recipe.py",
                                             "edgeseq/report/diff.py", "edgeseq/devices.py", "edgeseq/cli/profile.py",
                                             "edgeseq/quantize.py", "edgeseq/formats/onnx/derive.py"}


def test_a_stale_snippet_is_reported_not_skipped(tmp_path):
    mutant = TOOL.Mutant("gone", "edgeseq/parity.py", "this text is not in the source", "x", ("tests/x.py",), "")
    assert TOOL.snippet_count(mutant) == 0
    twice = TOOL.Mutant("twice", "edgeseq/parity.py", "def ", "x", ("tests/x.py",), "")
    assert TOOL.snippet_count(twice) > 1


def test_only_refuses_an_unknown_name(capsys):
    with pytest.raises(SystemExit) as info:
        TOOL.main(["--only", "no-such-mutant", "--list"])
    assert info.value.code == 2 and "unknown mutant no-such-mutant" in capsys.readouterr().err
