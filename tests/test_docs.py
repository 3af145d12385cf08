"""The documentation is self-contained: every file it names in `backticks` exists here."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "interop" / "README.md",
    ROOT / "experiments" / "README.md",
]
# An inline code span that names a file of the repository's kinds.
NAMED = re.compile(r"(?<!`)`([\w./-]+\.(?:md|py|toml|sh|csv|json|png))`(?!`)")
# Files a reader makes or a run writes, named as examples rather than as repository files.
EXAMPLES = {"peer.toml", "spec.toml", "run.json", "environment.json", "report.md"}


def _inline(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.S)  # fenced blocks hold commands


def _repository_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.split()


def test_every_file_the_docs_name_is_in_the_repository():
    files = _repository_files()
    missing = []
    for doc in DOCS:
        for name in NAMED.findall(_inline(doc.read_text("utf-8"))):
            if name in EXAMPLES or name.endswith((".csv", ".png")):
                continue
            # A doc may shorten a path (`ike/sa.py`) when the context says where it is.
            if not any(f == name or f.endswith("/" + name) for f in files):
                missing.append(f"{doc.relative_to(ROOT)}: {name}")
    assert missing == []


def test_no_doc_cites_material_outside_the_repository():
    for doc in DOCS:
        text = doc.read_text("utf-8")
        for outside in ("../shared", "shared/", "lab-facts", "reference digest"):
            assert outside not in text, (doc.name, outside)
