"""The UI follows the registry file as the service does, without a restart: a category added to the
file gets its button (disabled while not indexed, with the command that indexes it), a new column
of a category its filter controls (search section and Browse tab), a removed category loses its button.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import TINY, copy_home
from tests.service.server import running_service
from visearch.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.browser]
ADDED = f"{TINY}-copy"


@pytest.fixture(scope="module")
def own_home(indexed_home: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A copy of the indexed home: this module edits its registry file."""
    return copy_home(indexed_home, tmp_path_factory.mktemp("registry") / "home")


@pytest.fixture(scope="module")
def own_server(own_home: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real service on that home (torn down after the browser, which the test names second)."""
    log = tmp_path_factory.mktemp("service") / "server.log"
    with running_service(own_home, log, {"TMPDIR": str(tmp_path_factory.mktemp("tmpdir"))}) as (url, _):
        yield url


def edit_registry(path: Path, change: Any) -> None:
    """Apply ``change`` to the registry file's categories (a list of entries), as an operator's edit would."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["categories"] = change(raw["categories"])
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")


def test_a_registry_edit_reaches_the_ui_without_a_restart(own_server: str, browser, own_home: Settings) -> None:  # type: ignore[no-untyped-def]
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    # Re-rendered buttons replace their elements: a stale one is read again.
    wait = WebDriverWait(browser, 60, ignored_exceptions=[StaleElementReferenceException])
    browser.get(f"{own_server}/ui/")
    wait.until(ec.element_to_be_clickable((By.ID, f"category-{TINY}"))).click()
    wait.until(ec.visibility_of_element_located((By.ID, f"filter-{TINY}-label-from")))
    assert not browser.find_elements(By.ID, f"category-{ADDED}")
    assert not browser.find_elements(By.ID, f"filter-{TINY}-year-from")

    # The operator adds a category (a copy of tiny's entry under another name: nothing indexed it)
    # and declares a new column of tiny, while the service runs and the page stays open.
    def added(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        tiny = next(entry for entry in entries if entry["name"] == TINY)
        tiny["fields"] = {**tiny["fields"], "year": "integer"}
        return [*entries, {**tiny, "name": ADDED, "title": "Copy of tiny"}]

    path = own_home.visearch_categories
    assert path is not None
    edit_registry(path, added)
    wait.until(lambda driver: "not indexed" in driver.find_element(By.ID, f"category-{ADDED}").text)
    assert not browser.find_element(By.ID, f"category-{ADDED}").is_enabled()
    assert f"visearch pipeline run -c {ADDED}" in browser.find_element(By.ID, "index-status").text
    # The chosen category's new column gets its controls, in the search section and in Browse.
    wait.until(ec.visibility_of_element_located((By.ID, f"filter-{TINY}-year-from")))
    assert browser.find_element(By.ID, f"category-{TINY}").is_enabled()
    wait.until(ec.element_to_be_clickable((By.XPATH, "//button[@role='tab' and normalize-space()='Browse']"))).click()
    wait.until(ec.visibility_of_element_located((By.ID, f"browse-filter-{TINY}-year-from")))

    # The operator removes the category again: its button goes.
    edit_registry(path, lambda entries: [entry for entry in entries if entry["name"] != ADDED])
    wait.until(lambda driver: not driver.find_elements(By.ID, f"category-{ADDED}"))
    assert f"-c {ADDED}" not in browser.find_element(By.ID, "index-status").text
