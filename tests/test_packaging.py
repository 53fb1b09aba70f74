"""The sdist and the wheel, built as a release would build them: what they hold and what the
package index shows of them (metadata, links, the long description).

``python -m build`` makes the sdist, then the wheel from the sdist (so a file the wheel needs
but the sdist lacks fails here). ``--no-isolation`` uses the build backend installed by
``make setup`` (the ``dev`` group), so the test needs no network.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from configparser import ConfigParser
from dataclasses import dataclass
from email.message import Message
from email.parser import Parser
from pathlib import Path, PurePosixPath

import pytest

import backburner

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "backburner"
REPO = "https://github.com/backburner-dev/backburner"
#: Where the long description sends the README's relative links (see pyproject.toml).
BLOB = f"{REPO}/blob/main/"
RAW = "https://raw.githubusercontent.com/backburner-dev/backburner/main/"
#: Development tools: none may reach the published metadata, in any extra.
DEV_TOOLS = frozenset(
    {"pytest", "pytest-timeout", "hypothesis", "mypy", "ruff", "playwright", "fastapi",
     "httpx", "httpx2", "uvloop", "httptools", "mkdocs", "mkdocs-material", "mkdocstrings",
     "sybil", "build", "hatchling", "hatch-fancy-pypi-readme",
     # the demo's: it lives in the repository, not in the package
     "uvicorn", "aiosmtplib", "aiosmtpd"}
)  # fmt: skip


#: What a developer's checkout has that no sdist should (venvs, caches, builds, results).
LOCAL_FILES = re.compile(
    r"(\.venv[^/]*|\.\w+_cache|\.hypothesis|build|dist|site|test-artifacts|benchmarks/results)"
    r"(/|$)"
)


@dataclass(frozen=True)
class Dist:
    wheel: Path
    sdist: Path

    def wheel_names(self) -> list[str]:
        with zipfile.ZipFile(self.wheel) as wheel:
            return wheel.namelist()

    def sdist_names(self) -> list[str]:
        """Paths inside the sdist, without its ``backburner-X.Y.Z/`` folder."""
        with tarfile.open(self.sdist) as sdist:
            return [str(PurePosixPath(*PurePosixPath(n).parts[1:])) for n in sdist.getnames()]

    def metadata(self) -> Message:
        with zipfile.ZipFile(self.wheel) as wheel:
            [name] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
            return Parser().parsestr(wheel.read(name).decode())

    def long_description(self) -> str:
        """The README as the package index renders it (the body of METADATA)."""
        body = self.metadata().get_payload()
        assert isinstance(body, str)
        return body


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    [wheel] = out.glob("*.whl")
    [sdist] = out.glob("*.tar.gz")
    return Dist(wheel, sdist)


# The wheel.


def test_the_wheel_holds_the_package_and_nothing_else(dist: Dist) -> None:
    names = dist.wheel_names()
    tops = {name.split("/")[0] for name in names}

    assert tops == {"backburner", f"backburner-{backburner.__version__}.dist-info"}
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_the_wheel_has_every_file_of_the_source_package(dist: Dist) -> None:
    """py.typed, the dashboard's templates and static files: data files are easy to lose."""
    in_wheel = {name for name in dist.wheel_names() if name.startswith("backburner/")}
    in_tree = {
        path.relative_to(PACKAGE.parent).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }

    assert in_wheel == in_tree
    assert "backburner/py.typed" in in_wheel
    assert any(re.fullmatch(r"backburner/dashboard/templates/\w+\.html", n) for n in in_wheel)
    assert any(re.fullmatch(r"backburner/dashboard/static/\w+\.(js|css)", n) for n in in_wheel)


# The metadata.


def test_pytest_finds_the_fixtures_through_the_wheels_entry_point(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as wheel:
        [name] = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
        entry_points = ConfigParser()
        entry_points.read_string(wheel.read(name).decode())

    assert dict(entry_points["pytest11"]) == {"backburner": "backburner.pytest_plugin"}


def test_the_version_is_the_one_in_the_package(dist: Dist) -> None:
    metadata = dist.metadata()

    assert metadata["Name"] == "backburner"
    assert metadata["Version"] == backburner.__version__
    assert dist.wheel.name.startswith(f"backburner-{backburner.__version__}-")
    assert dist.sdist.name == f"backburner-{backburner.__version__}.tar.gz"


def test_the_version_is_written_in_one_place() -> None:
    """``__version__`` in the package; pyproject.toml reads it (``dynamic``) and repeats none."""
    pyproject = (ROOT / "pyproject.toml").read_text()

    assert not re.search(r"^version\s*=", pyproject, flags=re.M)
    assert re.search(r'^dynamic = \[[^\]]*"version"', pyproject, flags=re.M)
    assert re.search(r'^__version__ = "[^"]+"$', (PACKAGE / "__init__.py").read_text(), re.M)


def test_the_project_urls_are_there_and_absolute(dist: Dist) -> None:
    urls = dict(entry.split(", ", 1) for entry in dist.metadata().get_all("Project-URL", []))

    assert set(urls) == {"Homepage", "Documentation", "Source", "Changelog", "Issues"}
    assert all(url.startswith("https://") for url in urls.values()), urls


def test_no_development_tool_or_demo_extra_is_published(dist: Dist) -> None:
    metadata = dist.metadata()
    extras = set(metadata.get_all("Provides-Extra", []))
    required = {
        re.match(r"[A-Za-z0-9._-]+", requirement)[0].lower()  # type: ignore[index]
        for requirement in metadata.get_all("Requires-Dist", [])
    }

    assert {"cron", "dashboard", "otel", "taskiq"} <= extras
    assert not extras & {"dev", "demo", "test", "docs"}
    assert not required & DEV_TOOLS


# The long description: the README as the package index shows it.


def _without_code(markdown: str) -> str:
    """The text outside fenced blocks and `inline code`, where links are links."""
    markdown = re.sub(r"^( *)(```|~~~).*?^\1\2[ \t]*$", "", markdown, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", markdown)


def _link_targets(markdown: str) -> list[str]:
    """Targets of inline links and pictures, reference definitions, and HTML src/href."""
    text = _without_code(markdown)
    inline = re.findall(r"\]\(\s*<?([^)\s>]+)", text)
    definitions = re.findall(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", text, flags=re.M)
    html = re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']+)""", text)
    return inline + definitions + html


def _github_anchor(heading: str) -> str:
    """The id GitHub gives a README heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_long_description_is_the_readme_as_markdown(dist: Dist) -> None:
    metadata = dist.metadata()
    readme = (ROOT / "README.md").read_text()

    def undo_links(text: str) -> str:
        return text.replace(RAW, "").replace(BLOB, "").replace(f"{REPO}#", "#")

    assert metadata["Description-Content-Type"] == "text/markdown"
    # Only link targets changed: the same text, and code blocks untouched.
    assert undo_links(dist.long_description()) == undo_links(readme)


def test_the_long_description_links_are_absolute(dist: Dist) -> None:
    """Relative links and pictures point nowhere on the package index."""
    targets = _link_targets(dist.long_description())

    assert targets, "no link found: the link finder is broken"
    relative = [t for t in targets if not re.match(r"(https://|mailto:)", t)]
    assert relative == []


def test_the_long_description_links_into_the_repository_resolve(dist: Dist) -> None:
    """A README anchor names a heading of the README; a file link names a file that exists;
    a picture goes to the raw file (the page around it would show as a broken image)."""
    readme = (ROOT / "README.md").read_text()
    headings = {
        _github_anchor(h) for h in re.findall(r"^#+ (.+)$", _without_code(readme), flags=re.M)
    }

    for target in _link_targets(dist.long_description()):
        if target.startswith(f"{REPO}#"):
            assert target.removeprefix(f"{REPO}#") in headings, target
        elif target.startswith((BLOB, RAW)):
            path = target.removeprefix(BLOB).removeprefix(RAW).partition("#")[0]
            assert (ROOT / path).exists(), target
    for picture in re.findall(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)", _without_code(readme)):
        if not picture.startswith("https://"):
            assert f"{RAW}{picture.lstrip('/')}" in _link_targets(dist.long_description())


# The sdist.


def test_the_sdist_holds_the_sources_tests_and_docs_but_no_local_files(dist: Dist) -> None:
    names = set(dist.sdist_names())

    for needed in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "mkdocs.yml",
                   "PKG-INFO", "src/backburner/__init__.py", "src/backburner/py.typed",
                   "tests/test_packaging.py", "docs/index.md"):  # fmt: skip
        assert needed in names, needed
    local = [
        name
        for name in names
        if LOCAL_FILES.match(name) or "__pycache__" in name or name.endswith(".pyc")
    ]
    assert local == []
