"""The repository points only at documents it contains.

Every text file of the repository (tracked, or new and not ignored) is scanned for two kinds of reference:

- a Markdown document named anywhere (a name ending in ``.md``, with or without a path): it must exist in the
  repository, relative to the referencing file or to the repository root;
- a relative link in a Markdown file (``[text](path)``): its target (file or folder) must exist relative to
  the Markdown file, as GitHub resolves it (a leading ``/`` is the repository root).

Nothing outside the repository counts, not even a sibling folder of the checkout: a document a reader of the
repository cannot open is a dangling reference.
"""

from __future__ import annotations

import posixpath
import re
import subprocess
from functools import cache

import pytest

from base.config import PROJECT_ROOT

pytestmark = pytest.mark.skipif(not (PROJECT_ROOT / ".git").exists(), reason="not a git checkout: no file list")

# Words ending in ".md" (a path of word characters, dots, slashes and dashes), not part of a longer name.
MD_REFERENCE = re.compile(r"(?<![\w./-])([\w./-]*\w\.md)\b(?![\w/-])")
# [text](target "title"): the target up to a space or the closing parenthesis.
MD_LINK = re.compile(r"\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"'\n]*[\"'])?\s*\)")
URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+")

MD = ".md"  # names below are spelled "NAME{MD}", so that this file does not reference them itself

# References to documents that are, by design, not in the repository: (referencing file, reference) -> why.
ALLOWED_EXTERNAL: dict[tuple[str, str], str] = {}


@cache
def repository_files() -> frozenset[str]:
    """Paths (relative, POSIX) of the files git tracks or would track: tracked plus untracked-not-ignored."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=PROJECT_ROOT, capture_output=True, check=True).stdout
    return frozenset(p for p in out.decode().split("\0") if p and (PROJECT_ROOT / p).is_file())


@cache
def repository_dirs() -> frozenset[str]:
    dirs = {""}
    for path in repository_files():
        while (path := posixpath.dirname(path)):
            dirs.add(path)
    return frozenset(dirs)


def in_repository(path: str) -> bool:
    """True if ``path`` (relative to the root, possibly with ``..``) is a file or folder of the repository."""
    normal = posixpath.normpath(path)
    if normal == ".":
        return True
    if normal.startswith("../") or normal == ".." or normal.startswith("/"):
        return False  # outside the checkout
    return normal in repository_files() or normal in repository_dirs()


def text_of(path: str) -> str | None:
    data = (PROJECT_ROOT / path).read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def dangling_references(path: str, text: str) -> list[str]:
    """The references to documents or link targets in ``text`` (the file ``path``) that do not resolve."""
    here = posixpath.dirname(path)
    problems = []
    without_urls = URL.sub(" ", text)
    for lineno, line in enumerate(without_urls.splitlines(), 1):
        for m in MD_REFERENCE.finditer(line):
            ref = m.group(1)
            if (path, ref) in ALLOWED_EXTERNAL:
                continue
            if not (in_repository(posixpath.join(here, ref)) or in_repository(ref.lstrip("/"))):
                problems.append(f"{path}:{lineno}: {ref!r} is not a document of this repository")
    if path.endswith(".md"):
        for lineno, line in enumerate(text.splitlines(), 1):
            for m in MD_LINK.finditer(line):
                target = m.group(1)
                if target.startswith("#") or re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target):
                    continue  # an anchor on the same page, or a URL (https:, mailto:, ...)
                file_part = re.split(r"[#?]", target, maxsplit=1)[0]
                resolved = file_part[1:] if file_part.startswith("/") else posixpath.join(here, file_part)
                if not in_repository(resolved):
                    problems.append(f"{path}:{lineno}: link target {target!r} does not exist in the repository")
    return problems


def test_every_referenced_document_exists() -> None:
    problems = []
    for path in sorted(repository_files()):
        text = text_of(path)
        if text is not None:
            problems += dangling_references(path, text)
    assert not problems, "references to documents the repository does not contain:\n" + "\n".join(problems)


def test_allow_list_is_still_needed() -> None:
    """An allow-list entry whose reference is gone is removed, so the list stays short and true."""
    for (path, ref), why in ALLOWED_EXTERNAL.items():
        assert path in repository_files(), f"{path} ({why}) is no longer in the repository"
        assert ref in (text_of(path) or ""), f"{path} no longer mentions {ref!r}: drop its allow-list entry"


@pytest.mark.parametrize(("path", "text", "dangling"), [
    ("base/x.py", '"""The contract (docs/design.md)."""', False),
    ("base/x.py", '"""The contract (README.md)."""', False),  # resolved from the repository root
    ("base/x.py", f'"""The contract (DESIGN{MD})."""', True),
    ("base/x.py", f"see ../elsewhere/DESIGN{MD}", True),  # outside the repository
    ("base/x.py", f"see /srv/team/DESIGN{MD}", True),
    ("base/x.py", f"https://example.org/CHANGES{MD} is a URL", False),
    ("tests/x.py", f"({MD} files are Markdown)", False),
    ("docs/design.md", "[contract](../base/contract.py#L1)", False),
    ("docs/design.md", "[gone](../base/" + "gone.py)", True),
    ("docs/design.md", "[root](/README.md), [anchor](#the-event), [web](https://example.org/x)", False),
    ("README.md", "[wrong base](../README.md)", True),  # a link resolves relative to its own file
])
def test_the_checker_itself(path: str, text: str, dangling: bool) -> None:
    assert bool(dangling_references(path, text)) is dangling, dangling_references(path, text)
