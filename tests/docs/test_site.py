"""The documentation: the MkDocs site builds with --strict, and the README stays one screen of links.

mkdocs.yml turns every link check (missing page, missing anchor, page left out of `nav`) into a
warning, and --strict turns a warning into a failed build, so a broken link fails here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README_MAX_LINES = 300
# [text](target): the README's Markdown links; absolute URLs and mail links are not ours to check.
LINK = re.compile(r"\]\(([^)\s]+)\)")


def build_site(site: Path, project: Path = ROOT) -> subprocess.CompletedProcess[str]:
    # NO_MKDOCS_2_WARNING: mkdocs-material prints a banner about MkDocs 2 on every build.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=300)


def test_site_builds_strict_and_readme_links_resolve(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = build_site(site)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (site / "index.html").is_file()
    assert (site / "screenshots" / "ui.png").is_file()

    # The README is not part of the site (GitHub renders it), so its links are checked here:
    # relative paths that exist, and a docs page's anchor that the built page defines.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = [t for t in LINK.findall(readme) if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    assert any(t.startswith("docs/") for t in targets), "the README links into docs/"
    for target in targets:
        path, _, anchor = target.partition("#")
        assert (ROOT / path).exists(), f"README links to a missing file: {target}"
        if anchor:
            assert path.startswith("docs/") and path.endswith(".md"), target
            page = Path(path).relative_to("docs").with_suffix("")
            html = site / ("index.html" if page.name == "index" else page / "index.html")
            ids = set(re.findall(r'id="([^"]+)"', html.read_text(encoding="utf-8")))
            assert anchor in ids, f"README links to a missing anchor: {target}"


def test_readme_is_one_screen_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < README_MAX_LINES
    assert "make demo" in readme and "make test" in readme


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    """The validation settings stay strict: a copy of the docs with one broken link does not build."""
    copy = tmp_path / "project"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    index = copy / "docs" / "index.md"
    index.write_text(index.read_text(encoding="utf-8") + "\n[gone](no-such-page.md)\n", encoding="utf-8")
    result = build_site(tmp_path / "site", project=copy)
    assert result.returncode != 0
    assert "no-such-page.md" in result.stderr
