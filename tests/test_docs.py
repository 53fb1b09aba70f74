"""Every ```python block of the docs runs, alone, as a reader who copies it would run it.

Each block is a complete program: it runs in a fresh module, so a block that leans on an import
or a name from an earlier block fails here, as it would for the reader. It runs as the module
``docs_example``, not ``__main__``, so a block may end with ``if __name__ == "__main__":
uvicorn.run(app)`` to show how to serve without starting a server in the tests. Tracebacks
name the Markdown file and its line.

Sybil finds the blocks (fences in lists, quotes and admonitions, with attributes such as
``python title="app.py"``); running them is done here. A block that cannot run here (it is a
test file that another test runs under pytest, it needs another machine) is left out only by a
marker just above it, which says where it runs instead; it makes no test item, so that a run
under CI skips nothing::

    <!-- skip: next is a test file: tests/test_testing.py runs it under pytest -->

A block that changes the process for good (it sets OpenTelemetry's global tracer provider)
runs in a Python process of its own::

    <!-- isolate: next sets the global tracer provider -->

A marker without a reason, or with nothing after it, fails the collection. ``pycon`` sessions
(``>>>``) are refused rather than left unrun: write them as ``python`` blocks with ``assert``.

The docs site itself is built by ``make docs`` (``mkdocs build --strict``); one test here also
builds it, to check that the reference documents every public name.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
from sybil import Document, Region
from sybil.parsers.markdown.lexers import DirectiveInHTMLCommentLexer, FencedCodeBlockLexer

import backburner

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

#: Markdown files outside docs/ whose python blocks run too, relative to the repository root.
EXTRA_DOCUMENTS: list[str] = ["README.md"]

#: Fence languages run as Python code; the first word of the info string, or `{.python ...}`.
PYTHON_LANGUAGES = frozenset({"python", "py", "python3"})
#: Interactive sessions, which these tests do not run: refused, so none is left untested.
SESSION_LANGUAGES = frozenset({"pycon", "python-console", "pytb"})
#: The module name a block runs as: anything but "__main__".
MODULE_NAME = "docs_example"


@dataclass(frozen=True)
class Block:
    """One python block: where it is and its source, dedented as a reader would copy it."""

    path: Path
    line: int  # of the opening fence, 1-based
    source: str
    skip_reason: str | None = None
    isolate_reason: str | None = None

    def __str__(self) -> str:
        try:
            where = self.path.relative_to(ROOT)
        except ValueError:
            where = self.path
        return f"{where}:{self.line}"

    def run(self) -> None:
        """Run the block as a module of its own (registered while it runs, as imports are, so
        dataclasses and FastAPI can find the module of what it defines)."""
        __tracebackhide__ = True
        # Blank lines first, so the compiled code's line numbers are the Markdown file's.
        code = compile("\n" * self.line + self.source, str(self.path), "exec", dont_inherit=True)
        module = types.ModuleType(MODULE_NAME)
        module.__file__ = str(self.path)
        sys.modules[MODULE_NAME] = module
        if self.isolate_reason is not None:
            self._run_in_own_process()
            return
        try:
            exec(code, module.__dict__)
        finally:
            del sys.modules[MODULE_NAME]

    def _run_in_own_process(self) -> None:
        """The same, in a fresh interpreter: what the block changes dies with it."""
        runner = (
            "import sys, types\n"
            f"module = types.ModuleType({MODULE_NAME!r})\n"
            f"module.__file__ = {str(self.path)!r}\n"
            f"sys.modules[{MODULE_NAME!r}] = module\n"
            "source = sys.stdin.read()\n"
            f"exec(compile(source, {str(self.path)!r}, 'exec', dont_inherit=True), "
            "module.__dict__)\n"
        )
        run = subprocess.run(
            [sys.executable, "-W", "error", "-c", runner],
            input="\n" * self.line + self.source,
            capture_output=True,
            text=True,
            timeout=100,
            check=False,
        )
        assert run.returncode == 0, f"{self} failed in its own process:\n{run.stderr}"


@dataclass(frozen=True)
class _Marker:
    action: str  # "skip" or "isolate"
    reason: str


_FENCES = FencedCodeBlockLexer(language=r".+", mapping={"language": "info", "source": "source"})
_MARKERS = DirectiveInHTMLCommentLexer(directive="skip|isolate", arguments=r".*?")


def _language(info: str) -> str:
    """``python``, from ``python``, ``python title="app.py"`` or ``{.python hl_lines="2"}``."""
    first = info.strip().lstrip("{").split(maxsplit=1)
    return first[0].lstrip(".").lower() if first else ""


def _python_regions(document: Document) -> list[Region]:
    regions = []
    for region in _FENCES(document):
        language = _language(region.lexemes["info"])
        where = f"{document.path}, {document.line_column(region.start)}"
        if language in SESSION_LANGUAGES:
            raise ValueError(f"{where}: a {language} session is not run by the tests; "
                             "write it as a ```python block with assert statements")  # fmt: skip
        if language in PYTHON_LANGUAGES:
            regions.append(Region(region.start, region.end, parsed=region.lexemes["source"]))
    return regions


def _marker_regions(document: Document) -> list[Region]:
    regions = []
    for region in _MARKERS(document):
        where = f"{document.path}, {document.line_column(region.start)}"
        kind = region.lexemes["directive"]
        action, _, reason = (region.lexemes["arguments"] or "").partition(" ")
        reason = reason.strip().strip("\"'").strip()
        if action != "next" or not reason:
            raise ValueError(f"{where}: write a {kind} as <!-- {kind}: next REASON -->, with the "
                             f"reason the block cannot run here as it is")  # fmt: skip
        regions.append(Region(region.start, region.end, parsed=_Marker(kind, reason)))
    return regions


def collect(path: Path) -> list[Block]:
    """The python blocks of one Markdown file, in order, each with its skip reason if any."""
    document = Document.parse(str(path), _python_regions, _marker_regions)
    blocks: list[Block] = []
    marker: _Marker | None = None
    for example in document.examples():
        if isinstance(example.parsed, _Marker):
            if marker is not None:
                raise ValueError(f"{path}:{example.line}: a second marker before a block")
            marker = example.parsed
            continue
        line = example.line + example.parsed.line_offset
        skip = marker.reason if marker and marker.action == "skip" else None
        isolate = marker.reason if marker and marker.action == "isolate" else None
        blocks.append(Block(path, line, str(example.parsed), skip, isolate))
        marker = None
    if marker is not None:
        raise ValueError(f"{path}: a {marker.action} marker with no python block after it")
    return blocks


def documents() -> list[Path]:
    """Every Markdown file under docs/, and the EXTRA_DOCUMENTS."""
    return sorted(DOCS.rglob("*.md")) + [ROOT / name for name in EXTRA_DOCUMENTS]


def _collect_or_nothing(path: Path) -> list[Block]:
    """A file whose markers are wrong fails test_every_document_can_be_collected, not the
    whole run (a collection error would stop every other test too)."""
    try:
        return collect(path)
    except ValueError:
        return []


def _params() -> list[object]:
    """Every block but those marked to run elsewhere (no skipped item: CI skips nothing)."""
    return [
        pytest.param(block, id=str(block))
        for path in documents()
        for block in _collect_or_nothing(path)
        if not block.skip_reason
    ]


@pytest.mark.parametrize("path", documents(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_document_can_be_collected(path: Path) -> None:
    collect(path)


@pytest.mark.parametrize("block", _params())
def test_python_block_in_the_docs_runs(block: Block) -> None:
    block.run()


# The runner itself, on Markdown files made for the test.


def _markdown(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "page.md"
    path.write_text(text)
    return path


def test_a_block_without_its_imports_fails_at_its_line(tmp_path: Path) -> None:
    path = _markdown(tmp_path, "# A page\n\n```python\napp = FastAPI()\n```\n")
    [block] = collect(path)

    with pytest.raises(NameError, match="FastAPI") as failure:
        block.run()

    assert failure.traceback[-1].path == path
    assert failure.traceback[-1].lineno + 1 == 4  # pytest counts lines from 0


def test_a_block_does_not_see_the_names_of_the_block_before(tmp_path: Path) -> None:
    text = "```python\nimport json\nsettings = {}\n```\n\n```python\njson.dumps(settings)\n```\n"
    first, second = collect(_markdown(tmp_path, text))
    first.run()

    with pytest.raises(NameError, match="json"):
        second.run()


def test_blocks_are_found_in_admonitions_lists_and_with_attributes(tmp_path: Path) -> None:
    text = """\
```python title="app.py"
raise RuntimeError("ran 1")
```

!!! note
    ```python
    raise RuntimeError("ran 2")
    ```

1. A step:

    ```{.python hl_lines="1"}
    raise RuntimeError("ran 3")
    ```

```py
raise RuntimeError("ran 4")
```

```sh
not python
```
"""
    blocks = collect(_markdown(tmp_path, text))

    assert [block.line for block in blocks] == [1, 6, 12, 16]
    for number, block in enumerate(blocks, start=1):
        with pytest.raises(RuntimeError, match=f"ran {number}"):
            block.run()


def test_a_block_runs_as_a_module_that_is_not_main(tmp_path: Path) -> None:
    text = """\
```python
from dataclasses import dataclass

@dataclass
class Settings:
    workers: int = 8

assert __name__ == "docs_example"
if __name__ == "__main__":
    raise SystemExit("would start a server")
assert Settings().workers == 8
```
"""
    [block] = collect(_markdown(tmp_path, text))

    block.run()

    assert "docs_example" not in sys.modules


def test_a_skip_marker_with_a_reason_skips_only_the_next_block(tmp_path: Path) -> None:
    text = "<!-- skip: next needs a Redis server -->\n```python\nx\n```\n\n```python\ny\n```\n"

    skipped, run = collect(_markdown(tmp_path, text))

    assert skipped.skip_reason == "needs a Redis server"
    assert run.skip_reason is None


def test_an_isolated_block_runs_in_a_process_of_its_own(tmp_path: Path) -> None:
    text = (
        "<!-- isolate: next changes the process -->\n```python\nimport os, sys\n"
        "import json\nassert __name__ == 'docs_example'\nprint(os.getpid())\n"
        "json.dumps = None\n```\n"
        "<!-- isolate: next fails -->\n```python\nraise RuntimeError('ran apart')\n```\n"
    )
    changes, fails = collect(_markdown(tmp_path, text))
    assert changes.isolate_reason == "changes the process"

    changes.run()

    assert json.dumps is not None  # (the block broke its own process's json, not ours)
    with pytest.raises(AssertionError, match="ran apart"):
        fails.run()


def test_a_block_marked_to_run_elsewhere_makes_no_test_item() -> None:
    ran = {str(param.values[0]) for param in _params()}  # type: ignore[attr-defined]
    marked = [str(b) for path in documents() for b in collect(path) if b.skip_reason]
    assert marked, "the tutorial's test files are marked to run elsewhere"
    assert not ran & set(marked)


@pytest.mark.parametrize(
    "marker",
    [
        "<!-- isolate: next -->",
        "<!-- skip: next -->",
        '<!-- skip: next "" -->',
        "<!-- skip: start -->",
        "<!-- skip -->",
    ],
)
def test_a_skip_marker_needs_next_and_a_reason(tmp_path: Path, marker: str) -> None:
    path = _markdown(tmp_path, f"{marker}\n```python\nx\n```\n")

    with pytest.raises(ValueError, match=r"(skip|isolate): next REASON"):
        collect(path)


def test_a_skip_marker_with_no_block_after_it_is_refused(tmp_path: Path) -> None:
    path = _markdown(tmp_path, "```python\nx = 1\n```\n<!-- skip: next flaky -->\n")

    with pytest.raises(ValueError, match="no python block after it"):
        collect(path)


def test_an_interactive_session_is_refused_rather_than_left_unrun(tmp_path: Path) -> None:
    path = _markdown(tmp_path, "```pycon\n>>> 1 + 1\n2\n```\n")

    with pytest.raises(ValueError, match="pycon session is not run"):
        collect(path)


def test_every_python_fence_in_the_docs_is_collected() -> None:
    """A guard on the lexer: it finds as many python blocks as a plain look at the fences."""
    opening = re.compile(r"^[ \t>*+\-\d.)]*(```|~~~)\s*\{?\.?(python3?|py)\b", re.MULTILINE)
    for path in documents():
        assert len(collect(path)) == len(opening.findall(path.read_text())), path
    assert sum(len(collect(path)) for path in documents()) > 0


def test_the_docs_build_strictly_and_the_reference_has_every_public_name(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner about its successor
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr

    page = (tmp_path / "reference" / "api" / "index.html").read_text()
    documented = set(re.findall(r'id="backburner\.(\w+)"', page))
    assert documented == set(backburner.__all__)
    assert not re.findall(r'id="backburner\.[\w.]*\._', page)  # no _private names, no dunders
