"""Bounded fuzzing of the file loaders (hypothesis): 0 crashes, 0 hangs; the committed corpus is replayed."""

import tempfile
from pathlib import Path

import pytest
from fuzz_targets import SEEDS, TARGETS, run_target
from hypothesis import HealthCheck, given, settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis import strategies as st

CORPUS = Path(__file__).parent / "fuzz_corpus"
# derandomize: the same examples every run, so a red run reproduces (open-ended fuzzing: bench/fuzz_loaders.py)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                derandomize=True)

# Hypothesis writes ./.hypothesis even without a database (its cache of the test modules' constants, already while
# pytest collects, before any fixture runs): a temporary folder instead, removed when the run ends.
_HYPOTHESIS_HOME = tempfile.TemporaryDirectory(prefix="edgeseq-hypothesis-")
set_hypothesis_home_dir(_HYPOTHESIS_HOME.name)


def mutations(seed: bytes):
    """Truncations, byte flips and splices of a valid input: where parsers break, not just random noise."""
    return st.one_of(
        st.integers(0, len(seed)).map(lambda n: seed[:n]),
        st.lists(st.tuples(st.integers(0, max(0, len(seed) - 1)), st.integers(0, 255)), min_size=1, max_size=8).map(
            lambda flips: bytes(b if i not in dict(flips) else dict(flips)[i] for i, b in enumerate(seed))),
        st.binary(max_size=64).map(lambda junk: seed[: len(seed) // 2] + junk),
    )


@pytest.fixture(scope="module")
def onnx_seed(tmp_path_factory):
    import edgeseq

    art = edgeseq.export("seq-cnn", "onnx", out_dir=tmp_path_factory.mktemp("seed"))
    return Path(art.path).read_bytes()


@pytest.mark.parametrize("name", sorted(TARGETS))
@FAST
@given(data=st.binary(max_size=512))
def test_random_bytes(name, data):
    run_target(name, data)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_mutated_text_inputs(name):
    @FAST
    @given(data=st.one_of(*(mutations(s) for s in SEEDS[name])))
    def run(data):
        run_target(name, data)

    run()


def test_mutated_onnx(onnx_seed):
    @settings(FAST, max_examples=40)
    @given(data=mutations(onnx_seed))
    def run(data):
        run_target("onnx", data)

    run()


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*/*")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_corpus_replays(path):
    run_target(path.parent.name, path.read_bytes())
