"""The shell and Python blocks of README.md and docs/**/*.md run as documented, so the docs cannot rot.

The convention (docs/README.md, "Code blocks in these pages are tested"): ```bash and ```python blocks run, in order,
one temporary folder per page; words after the language in the fence tag a block: `exit=N` (the exit code it must
give), `slow` (only under -m slow), `file=NAME` (written to NAME, not run), or what it needs that a test machine may
lack (`gpu`, `tensorrt`, `ssh`, `adb`, `arm64`, `root`, `install`, `long`, `fragment`): such a block is skipped with
that reason, never silently. An unknown tag is a failure, so a typo cannot turn a block off.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUNNABLE = {"bash", "sh", "python"}
SHOWN = {"", "text", "toml", "json", "console", "yaml", "ini", "cpp", "c", "cuda", "markdown", "md"}
TIMEOUT_S = 600


def _has_gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch is a dependency
        return False


def _has_tensorrt() -> bool:
    return importlib.util.find_spec("tensorrt") is not None and _has_gpu()


# tag -> (is it available here?, the reason a block is skipped without it)
NEEDS = {
    "gpu": (_has_gpu, "needs a CUDA GPU (torch sees none here)"),
    "tensorrt": (_has_tensorrt, "needs TensorRT and a CUDA GPU (`import tensorrt` fails here or torch sees no GPU)"),
    "ssh": (lambda: False, "needs a device reachable over ssh (the profile's host: a Raspberry Pi, a Jetson)"),
    "adb": (lambda: False, "needs an Android phone attached over adb"),
    "arm64": (lambda: False, "needs the QEMU ARM64 target up (sudo tools/arm64-target up; tests/test_arm64_target.py "
                             "checks it)"),
    "root": (lambda: False, "needs root: it installs system packages or registers QEMU"),
    "install": (lambda: False, "installs packages into the environment (the README's test command is checked against "
                               ".ci/run by test_readme_test_command_is_what_ci_runs)"),
    "macos": (lambda: sys.platform == "darwin", "needs macOS: Core ML prediction (coremltools' MLModel.predict)"),
    "long": (lambda: False, "takes many minutes on its own (run it by hand)"),
    "fragment": (lambda: False, "an excerpt: needs your own code or files (a module, a checkpoint, a mutant) to run"),
}


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    tags: dict[str, str]  # "slow" -> "", "exit" -> "1", "file" -> "name"
    code: str

    @property
    def rel(self) -> str:
        return self.page.relative_to(ROOT).as_posix()

    @property
    def id(self) -> str:
        return f"{self.rel}:{self.line}"

    @property
    def runnable(self) -> bool:
        return self.lang in RUNNABLE and "file" not in self.tags

    @property
    def skip_reason(self) -> str | None:
        for tag, (available, reason) in NEEDS.items():
            if tag in self.tags and not available():
                return reason
        return None


_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,})(?P<info>[^`]*)$")


def parse_blocks(page: Path) -> list[Block]:
    """Fenced blocks of a Markdown file (indented fences inside list items included), with their info strings."""
    blocks, lines = [], page.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m.group("indent"), m.group("fence")
        words = m.group("info").split()
        lang, tags = (words[0].lower() if words else ""), {}
        for word in words[1:]:
            key, _, value = word.partition("=")
            tags[key] = value
        body, j = [], i + 1
        while j < len(lines) and not re.match(rf"^[ \t]*{fence}[ \t]*$", lines[j]):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        assert j < len(lines), f"{page}:{i + 1}: code block never closed"
        blocks.append(Block(page, i + 1, lang, tags, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


ALL_BLOCKS = [b for page in PAGES for b in parse_blocks(page)]
KNOWN_TAGS = {"exit", "slow", "file", *NEEDS}


def _params():
    for block in ALL_BLOCKS:
        if not block.runnable:
            continue
        marks = [pytest.mark.slow] if "slow" in block.tags else []
        yield pytest.param(block, id=block.id, marks=marks)


@dataclass
class PageRun:
    """One page's temporary folder and what its blocks did so far (blocks run in order; a later one may use what an
    earlier one wrote)."""

    page: Path
    folder: Path
    done: dict[int, bool] = field(default_factory=dict)  # block line -> passed

    def commands_before(self, line: int) -> list[int]:
        return [b.line for b in parse_blocks(self.page) if b.line < line and b.runnable]

    def files_before(self, line: int) -> list[Block]:
        return [b for b in parse_blocks(self.page) if b.line < line and "file" in b.tags]


_RUNS: dict[Path, PageRun] = {}
# A page's first command often is the same small export as other pages' ("edgeseq export cbhg-lite ... -o out"): it
# runs once, in a folder of its own, and later pages that start with the same block get a copy of what it wrote.
_FIRST_RUNS: dict[str, tuple[Path, int, str]] = {}  # block (+ files) -> (its folder, exit code, output)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)  # the venv's `edgeseq` and `python`
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env["COLUMNS"] = "160"
    env["MPLBACKEND"] = "Agg"
    env.pop("EDGESEQ_DEBUG", None)
    return env


def _execute(block: Block, folder: Path) -> subprocess.CompletedProcess | None:
    if "file" in block.tags:
        name = block.tags["file"]
        assert name and "/" not in name, f"{block.id}: file= needs a plain file name, got {name!r}"
        (folder / name).write_text(block.code)
        return None
    if block.lang == "python":
        script = folder / f"_block_{block.line}.py"
        script.write_text(block.code)
        cmd = [sys.executable, str(script)]
    else:
        cmd = ["bash", "-e", "-o", "pipefail", "-c", block.code]
    return subprocess.run(cmd, cwd=folder, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S)


def _expected_exit(block: Block) -> int:
    value = block.tags.get("exit", "0")
    assert value.isdigit(), f"{block.id}: exit= takes a number, got {value!r}"
    return int(value)


def _new_folder(tmp_path_factory, name: str) -> Path:
    folder = tmp_path_factory.mktemp(re.sub(r"[^\w]+", "-", name))
    (folder / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    return folder


def _run(block: Block, page_run: PageRun, tmp_path_factory) -> None:
    want = _expected_exit(block)
    if "file" in block.tags:
        _execute(block, page_run.folder)
        page_run.done[block.line] = True
        return
    if any(line in page_run.done for line in page_run.commands_before(block.line)):
        proc = _execute(block, page_run.folder)
        code, where = proc.returncode, f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    else:  # the page's first command: run once for every page that starts with it, in a folder of its own
        files = page_run.files_before(block.line)
        key = block.code + repr([(f.tags["file"], f.code) for f in files])
        if key not in _FIRST_RUNS:
            folder = _new_folder(tmp_path_factory, "first-command")
            for f in files:
                _execute(f, folder)
            proc = _execute(block, folder)
            _FIRST_RUNS[key] = (folder, proc.returncode,
                                f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
        folder, code, where = _FIRST_RUNS[key]
        shutil.copytree(folder, page_run.folder, symlinks=True, dirs_exist_ok=True,
                        ignore=lambda d, names: ["examples"] if Path(d) == folder else [])
    page_run.done[block.line] = code == want
    assert code == want, f"{block.id} exited {code}, the docs say {want}\n--- block\n{block.code}{where}"


@pytest.mark.parametrize("block", list(_params()))
def test_doc_block(block: Block, tmp_path_factory):
    reason = block.skip_reason
    if reason:
        pytest.skip(f"{block.id}: {reason}")
    page_run = _RUNS.get(block.page)
    if page_run is None:
        page_run = _RUNS[block.page] = PageRun(block.page, _new_folder(tmp_path_factory, block.rel))
    # the blocks before this one on the page, as a reader would have run them (a -k selection included)
    for earlier in parse_blocks(block.page):
        if earlier.line >= block.line:
            break
        if not (earlier.runnable or "file" in earlier.tags) or earlier.skip_reason:
            continue
        if "slow" in earlier.tags and "slow" not in block.tags:
            continue  # a default-run block never waits on a slow one (the convention: keep them independent)
        if earlier.line not in page_run.done:
            _run(earlier, page_run, tmp_path_factory)
        assert page_run.done[earlier.line], f"{block.id}: an earlier block of the page failed ({earlier.id})"
    _run(block, page_run, tmp_path_factory)


def test_every_block_has_known_tags():
    bad = [f"{b.id}: ```{b.lang} {' '.join(b.tags)}" for b in ALL_BLOCKS
           if (b.lang in RUNNABLE or "file" in b.tags) and set(b.tags) - KNOWN_TAGS]
    bad += [f"{b.id}: unknown language {b.lang!r}" for b in ALL_BLOCKS if b.lang not in RUNNABLE | SHOWN]
    assert not bad, "tags the docs test does not know (docs/README.md lists them):\n" + "\n".join(bad)


def test_the_docs_have_runnable_blocks():
    """A parser that found nothing would make every other test here pass vacuously."""
    runnable = [b for b in ALL_BLOCKS if b.runnable and not b.skip_reason and "slow" not in b.tags]
    pages = {b.page for b in runnable}
    assert ROOT / "README.md" in pages and len(pages) >= 10, sorted(p.name for p in pages)


def _pip_and_pytest(command: str) -> list[list[str]]:
    return [shlex.split(part) for part in command.split("&&")]


def test_readme_test_command_is_what_ci_runs():
    """README's "Run the tests" command installs what .ci/run installs and runs exactly its pytest command."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## The two commands\n", 1)[1].split("\n## ", 1)[0]
    commands = [b.code.strip() for b in parse_blocks(ROOT / "README.md")
                if b.lang == "bash" and section.find(b.code.strip()) >= 0]
    test_cmd = next(c for c in commands if "pytest" in c)
    assert test_cmd == ("pip install torch==2.13.0 && pip install -e '.[onnx,report,tflite,coreml,executorch,test]' && "
                        "python -m pytest -m \"not slow\" -n 2 --dist loadfile"), test_cmd
    ci = [ln.strip() for ln in (ROOT / ".ci/run").read_text().splitlines()
          if ln.strip() and not ln.strip().startswith("#")]
    ci_words = [shlex.split(ln) for ln in ci]
    for words in _pip_and_pytest(test_cmd):
        if words[0] == "pip":  # CI runs pip as `python -m pip ... --quiet`
            assert any(w[:3] == ["python", "-m", "pip"] and [x for x in w[3:] if x != "--quiet"] == words[1:]
                       for w in ci_words), f".ci/run does not run {' '.join(words)}"
        else:
            assert words in ci_words, f".ci/run does not run {' '.join(words)}"
    assert ci_words[-1] == shlex.split('python -m pytest -m "not slow" -n 2 --dist loadfile'), ci[-1]


_LINK = re.compile(r"\]\((?P<target>[^)\s#]+)(?:#[^)]*)?\)")
_RESULT = re.compile(r"bench/results/[\w.\-]+\.(?:json|log|txt|md)")


def test_links_and_result_files_exist():
    """Relative links between the pages, and every bench/results file a page cites, exist."""
    missing = []
    for page in PAGES:
        text = page.read_text()
        for m in _LINK.finditer(text):
            target = m.group("target")
            if re.match(r"^[a-z]+:", target):
                continue  # https:, mailto:
            if not (page.parent / target).exists():
                missing.append(f"{page.relative_to(ROOT)}: link {target}")
        for m in _RESULT.finditer(text):
            if not (ROOT / m.group(0)).exists():
                missing.append(f"{page.relative_to(ROOT)}: {m.group(0)}")
    assert not missing, "\n".join(missing)


def test_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
