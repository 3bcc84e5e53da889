"""Every relative link of the README and docs/ lands somewhere: its file exists and,
when it names a section (`page.md#section`), that page has the heading."""

import glob
import os
import re

import pytest

from .conftest import ROOT

PAGES = [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)),
         os.path.join(ROOT, "lns_larq", "weights", "README.md")]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def prose(path):
    """A Markdown page's text without its code blocks (whose lines are not headings or links)."""
    with open(path) as f:
        return re.sub(r"```.*?```", "", f.read(), flags=re.S)


def slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path):
    """The anchors of a Markdown page's headings."""
    return {slug(heading) for heading in re.findall(r"^#+ (.*)$", prose(path), re.M)}


def test_anchors_follow_github():
    # The slug rule itself, on headings of this project's kind (fails if it drifts).
    assert slug("Does Δ depend on the baseline?") == "does-δ-depend-on-the-baseline"
    assert "the-5-seed-comparison" in anchors(os.path.join(ROOT, "docs", "results", "long.md"))


@pytest.mark.parametrize("page", PAGES, ids=[os.path.relpath(p, ROOT) for p in PAGES])
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(prose(page)):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked offline
            continue
        path, _, anchor = target.partition("#")
        path = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        if not os.path.exists(path):
            broken.append(f"{target} (no such file)")
        elif anchor and path.endswith(".md") and anchor.lower() not in anchors(path):
            broken.append(f"{target} (no such section)")
    assert not broken, f"{os.path.relpath(page, ROOT)}: broken links: {broken}"
