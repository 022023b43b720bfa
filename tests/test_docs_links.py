"""Every relative link of the README and of docs/ leads somewhere: the file exists, and a
`#anchor` names a heading of the page it points to (as GitHub makes a heading's anchor)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1", flags=re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
# [text](target) and ![alt](target), with an optional "title".
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", flags=re.IGNORECASE)


def _prose(text: str) -> str:
    """The page without its code: a link-like text in a code block or span is not a link."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (letters, digits,
    underscores, hyphens and spaces stay), each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor on a page; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    result = set()
    for line in FENCE.sub("", text).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def broken_links(page: Path) -> list[str]:
    problems = []
    for target in LINK.findall(_prose(page.read_text())):
        if SCHEME.match(target):
            continue  # another site: not checked offline
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page
        if not destination.exists():
            problems.append(f"{target}: no such file")
        elif anchor:
            if destination.suffix != ".md":
                problems.append(f"{target}: an anchor into a file that is not a page")
            elif anchor not in anchors(destination.read_text()):
                problems.append(f"{target}: no heading with this anchor")
    return problems


def test_slug_follows_github():
    assert slug("A sample to classify: `pipeline.sample`") == "a-sample-to-classify-pipelinesample"
    assert slug("How far 92% is") == "how-far-92-is"
    assert slug("Views that keep the strokes' order") == "views-that-keep-the-strokes-order"
    assert slug("`make` targets") == "make-targets"


def test_repeated_headings_are_numbered():
    assert anchors("# Speed\n## Speed\n```\n# not a heading\n```\n## Speed\n") == {
        "speed",
        "speed-1",
        "speed-2",
    }


def test_a_broken_link_is_found(tmp_path):
    (tmp_path / "other.md").write_text("# Real heading\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#real-heading) [gone](missing.md) [bad anchor](other.md#nowhere)\n"
        "[self](#top) `[code](ignored.md)` [web](https://example.com/x)\n\n# Top\n"
        "```\n[fenced](ignored.md)\n```\n"
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "other.md#nowhere: no heading with this anchor",
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert page.exists()
    problems = broken_links(page)
    assert not problems, f"{page.relative_to(ROOT)}: broken links: {problems}"
