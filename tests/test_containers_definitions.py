"""The Apptainer definitions: their sections, and every file, extra and build argument they name exists.

Apptainer is not packaged for Debian 12, so the images are not built here; these checks catch what would
break a build on a site: a moved file, a renamed extra, an undefined template argument, torch installed
after the project (pip would then pull the default CUDA torch), or a %test that is not a working command.
"""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFINITIONS = sorted((REPO / "containers").glob("*.def"))
REQUIRED_SECTIONS = {"arguments", "files", "post", "environment", "runscript", "test", "labels", "help"}
TEMPLATE = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def parse_definition(path: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(header keywords, {section: body lines}) of an Apptainer definition file; `\\` continuations joined."""
    header: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current = None
    for line in path.read_text().replace("\\\n", " ").splitlines():
        if line.startswith("%"):
            current = line[1:].split()[0]
            assert current not in sections, f"{path.name}: section %{current} appears twice"
            sections[current] = []
        elif current is not None:
            if line.strip() and not line.strip().startswith("#"):
                sections[current].append(line.strip())
        elif line.strip() and not line.startswith("#"):
            keyword, _, value = line.partition(":")
            header[keyword.strip()] = value.strip()
    return header, sections


def arguments(sections: dict[str, list[str]]) -> dict[str, str]:
    return dict(line.split("=", 1) for line in sections["arguments"])


def render(line: str, values: dict[str, str]) -> str:
    """A line with its {{ NAME }} build arguments replaced by their defaults."""
    return TEMPLATE.sub(lambda match: values[match[1]], line)


def pip_installs(post: list[str], values: dict[str, str]) -> list[list[str]]:
    """The argument lists of the `pip install` commands in %post, build arguments filled in."""
    return [
        words[words.index("install") + 1 :]
        for words in (shlex.split(render(line, values)) for line in post)
        if "pip" in words and "install" in words
    ]


@pytest.fixture(scope="module")
def extras() -> set[str]:
    return set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def test_every_image_is_defined() -> None:
    assert {path.name for path in DEFINITIONS} == {"hpcq-cuda.def", "hpcq-rocm.def", "hpcq-aer-gpu.def"}


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda path: path.stem)
def test_header_and_sections(definition: Path) -> None:
    header, sections = parse_definition(definition)
    assert header["Bootstrap"] == "docker" and header["From"]
    assert REQUIRED_SECTIONS <= set(sections), f"missing {REQUIRED_SECTIONS - set(sections)}"
    # %setup runs on the build host as root; hpcq's images never need it.
    assert "setup" not in sections
    assert sections["test"] == ["hpcq doctor"]
    assert sections["runscript"] == ['exec hpcq "$@"']


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda path: path.stem)
def test_every_build_argument_is_defined(definition: Path) -> None:
    header, sections = parse_definition(definition)
    used = set(TEMPLATE.findall(definition.read_text()))
    assert used and used <= set(arguments(sections)), f"undefined: {used - set(arguments(sections))}"


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda path: path.stem)
def test_every_copied_file_exists(definition: Path) -> None:
    _, sections = parse_definition(definition)
    sources = [line.split()[0] for line in sections["files"]]
    assert "pyproject.toml" in sources and "hpcq" in sources
    missing = [source for source in sources if not (REPO / source).exists()]
    assert not missing, f"{definition.name} copies files that do not exist: {missing}"


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda path: path.stem)
def test_installs_torch_first_then_the_project_with_existing_extras(definition: Path, extras: set[str]) -> None:
    _, sections = parse_definition(definition)
    installs = pip_installs(sections["post"], arguments(sections))
    torch_at = next(i for i, words in enumerate(installs) if "torch==2.13.0" in words)
    project_at = next(i for i, words in enumerate(installs) if any(w.startswith("/opt/hpcq/src[") for w in words))
    assert torch_at < project_at, "torch must be installed before the project, as README.md says"
    named = re.fullmatch(r"/opt/hpcq/src\[(.*)\]", next(w for w in installs[project_at] if w.startswith("/opt")))
    wanted = set(named[1].split(","))
    assert wanted and wanted <= extras, f"extras not in pyproject.toml: {wanted - extras}"


@functools.cache
def run_script(script: str) -> subprocess.CompletedProcess:
    """Run a shell script once per distinct text (the images share their %test)."""
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda path: path.stem)
def test_test_section_is_a_working_hpcq_command(definition: Path) -> None:
    """The image's %test, run with this machine's hpcq: it must be a valid invocation that exits 0."""
    _, sections = parse_definition(definition)
    result = run_script("\n".join(sections["test"]))
    assert result.returncode == 0, result.stdout + result.stderr
