"""The Gradio UI in headless Chromium against the real service: category → upload → search → grid,
then filters (facet counts narrowing with the other filters), caption text, paging, more and less like this.

Uses Debian's chromium + chromedriver (no browser download). Saves docs/screenshots/ui.png when it
is missing or VISEARCH_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import ROOT, TINY
from visearch.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.browser]
SCREENSHOT = ROOT / "docs" / "screenshots" / "ui.png"


def shown(browser, element_id: str) -> bool:  # type: ignore[no-untyped-def]
    """Whether the element exists and is displayed (Gradio may not render hidden sections at all)."""
    from selenium.webdriver.common.by import By

    return any(element.is_displayed() for element in browser.find_elements(By.ID, element_id))


def input_image_src(browser) -> str | None:  # type: ignore[no-untyped-def]
    """The ``src`` of the shown input image (Gradio serves each image content under its own URL), or None."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        images = [img for img in browser.find_elements(By.CSS_SELECTOR, "#input-image img") if img.is_displayed()]
        return images[0].get_attribute("src") if images else None
    except StaleElementReferenceException:  # Gradio re-rendered it meanwhile
        return None


def save_full_page(browser, path: Path) -> None:  # type: ignore[no-untyped-def]
    """Screenshot of the whole page: grow the window to the document height first."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(int(height) + 120, 4000))
    path.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(path))


def query_image(settings: Settings) -> Path:
    return next((settings.objects_dir / "datasets" / TINY / "images" / "Ankle-boot").glob("*.png"))


def test_choose_upload_search_and_see_the_grid(server: str, browser, indexed_home: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(f"{server}/ui/")
    # The server fixture comes first so that it is torn down after the browser has disconnected
    # (an open Gradio event stream would hold the server's graceful shutdown).
    # Only the category section shows until a category is chosen.
    wait.until(ec.element_to_be_clickable((By.ID, f"category-{TINY}")))
    assert not shown(browser, "business-usage") and not shown(browser, "search")
    browser.find_element(By.ID, f"category-{TINY}").click()
    usage = wait.until(ec.visibility_of_element_located((By.ID, "business-usage")))
    assert "40 images" in usage.text

    # A non-image upload: the message shows in place, no input image appears.
    junk = tmp_path / "notes.txt"
    junk.write_text("not an image")
    browser.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(junk))
    error = wait.until(ec.visibility_of_element_located((By.ID, "provision-error")))
    assert "not a supported image" in error.text

    # A real upload → input image → search → result grid with similarity, class, file, captions.
    browser.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(query_image(indexed_home)))
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#input-image img")))
    wait.until(ec.invisibility_of_element_located((By.ID, "provision-error")))
    wait.until(ec.element_to_be_clickable((By.ID, "search"))).click()
    wait.until(lambda driver: len(driver.find_elements(By.CSS_SELECTOR, "#results img")) >= 6)
    table = wait.until(ec.visibility_of_element_located((By.ID, "results-table")))
    assert "100.0 %" in table.text and "Ankle-boot" in table.text and "article:" in table.text
    assert "Fashion-MNIST" in wait.until(ec.visibility_of_element_located((By.ID, "credits"))).text
    assert any((indexed_home.home / "tmp" / "gradio").rglob("*.png")), "Gradio's upload cache stays in the home"

    # Reset the results: the grid and the credits go, the input stays.
    browser.find_element(By.ID, "reset-results").click()
    wait.until(ec.invisibility_of_element_located((By.ID, "results-table")))
    assert shown(browser, "input-image") and not shown(browser, "credits")

    # Random pick gives a new input image (the uploaded one still shows until then: wait for another
    # image; a pick may be that very image, 1 in 40, so a few clicks are allowed); reset all hides
    # every section but the categories.
    browser.find_element(By.XPATH, "//button[@role='tab' and normalize-space()='Random']").click()
    uploaded = input_image_src(browser)
    assert uploaded is not None
    for _ in range(4):
        # A script click: Gradio's status overlay may still cover the button right after a pick.
        browser.execute_script("arguments[0].click()", wait.until(ec.element_to_be_clickable((By.ID, "random"))))
        try:
            WebDriverWait(browser, 30).until(lambda driver: input_image_src(driver) not in (None, uploaded))
            break
        except TimeoutException:
            continue
    else:
        pytest.fail(f"Pick a random image never replaced the input image {uploaded}")
    browser.find_element(By.ID, "reset-all").click()
    wait.until(ec.invisibility_of_element_located((By.ID, "business-usage")))
    assert not shown(browser, "search") and not shown(browser, "input-image")

    # Picking one of the category's examples gives an input image too.
    browser.find_element(By.ID, f"category-{TINY}").click()
    wait.until(
        ec.element_to_be_clickable((By.XPATH, "//button[@role='tab' and normalize-space()='Pick an example']"))
    ).click()
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#examples img"))).click()
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#input-image img")))


def result_rows(browser) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    """The rows of the shown results table as ``{heading: cell}`` (empty when none shows)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        heads = [th.text.strip() for th in browser.find_elements(By.CSS_SELECTOR, "#results-table th")]
        return [
            dict(zip(heads, (td.text.strip() for td in row.find_elements(By.TAG_NAME, "td")), strict=False))
            for row in browser.find_elements(By.CSS_SELECTOR, "#results-table tbody tr")
        ]
    except StaleElementReferenceException:  # Gradio re-rendered it meanwhile
        return []


def offered(browser, column: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The choices a filter dropdown of TINY offers (opened to read them, then closed); [] while re-rendered."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By

    try:
        browser.find_element(By.CSS_SELECTOR, f"#filter-{TINY}-{column} input").click()
        options = browser.find_elements(By.CSS_SELECTOR, f"#filter-{TINY}-{column} li[role=option]")
        return [option.text.replace("✓", "").strip() for option in options]
    except (StaleElementReferenceException, WebDriverException):  # Gradio re-rendered it meanwhile
        return []
    finally:
        browser.find_element(By.TAG_NAME, "h1").click()  # close the dropdown


def test_filter_text_paging_and_steering(server: str, browser, indexed_home: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)

    def search_and_wait_for_change() -> list[dict[str, str]]:
        before = result_rows(browser)
        browser.execute_script("arguments[0].click()", browser.find_element(By.ID, "search"))
        wait.until(lambda driver: (rows := result_rows(driver)) and rows != before)
        return result_rows(browser)

    def click_and_wait_for_change(element_id: str) -> list[dict[str, str]]:
        before = result_rows(browser)
        browser.execute_script("arguments[0].click()", wait.until(ec.element_to_be_clickable((By.ID, element_id))))
        wait.until(lambda driver: (rows := result_rows(driver)) and rows != before)
        return result_rows(browser)

    def select_result(position: int) -> dict[str, str]:
        """Select the result at ``position`` in the gallery; its table row once the steering buttons are live."""
        row = result_rows(browser)[position]
        browser.execute_script("arguments[0].click()", browser.find_elements(By.CSS_SELECTOR, "#results img")[position])
        wait.until(ec.text_to_be_present_in_element((By.ID, "selected-result"), row["file"]))
        wait.until(ec.element_to_be_clickable((By.ID, "more-like-this")))
        return row

    browser.get(f"{server}/ui/")
    wait.until(ec.element_to_be_clickable((By.ID, f"category-{TINY}"))).click()
    # Caption text alone (the category has captions, so search shows before any image): only rows
    # whose captions hold the word.
    box = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#caption-text textarea, #caption-text input")))
    box.send_keys("boot")
    rows = search_and_wait_for_change()
    # The words and their meaning fused (RRF): the rows holding the word first, related ones may follow.
    holding = ["ankle boot" in row["captions"].lower() for row in rows]
    assert rows and holding[0] and holding == sorted(holding, reverse=True), rows
    assert "hybrid score (RRF)" in rows[0]
    box.send_keys(Keys.CONTROL, "a", Keys.BACKSPACE)

    # An image, then filters: the facet dropdowns count what the other filters leave. Labels from 7
    # leave three classes in the class dropdown; the class Bag leaves one article. Every row is a Bag.
    browser.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(query_image(indexed_home)))
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#input-image img")))
    rows = search_and_wait_for_change()
    assert {row["class"] for row in rows} != {"Bag"} and "calibrated" in rows[0]
    every_class = ["Trouser (8)", "Sneaker (8)", "Bag (8)", "Ankle-boot (8)", "Dress (8)"]
    wait.until(lambda driver: sorted(offered(driver, "class")) == sorted(every_class))
    label_from = browser.find_element(By.CSS_SELECTOR, f"#filter-{TINY}-label-from input")
    label_from.send_keys("7")
    wait.until(lambda driver: sorted(offered(driver, "class")) == ["Ankle-boot (8)", "Bag (8)", "Sneaker (8)"])
    browser.find_element(By.CSS_SELECTOR, f"#filter-{TINY}-class input").click()
    wait.until(ec.element_to_be_clickable((By.XPATH, "//li[@role='option' and contains(., 'Bag (8)')]"))).click()
    browser.find_element(By.TAG_NAME, "h1").click()  # close the dropdown
    wait.until(lambda driver: offered(driver, "article") == ["Bag (8)"])
    wait.until(lambda driver: sorted(offered(driver, "class")) == ["Ankle-boot (8)", "Bag (8)", "Sneaker (8)"])
    rows = search_and_wait_for_change()
    assert len(rows) == 6 and {row["class"] for row in rows} == {"Bag"}, rows

    # Paging through the filtered results: the next page starts at 7, holds other files, all Bags;
    # the previous page is the first one again.
    first = rows
    rows = click_and_wait_for_change("next-page")
    assert rows[0]["#"] == "7" and {row["class"] for row in rows} == {"Bag"}
    assert not {row["file"] for row in rows} & {row["file"] for row in first}
    assert "Results 7–8" in browser.find_element(By.ID, "page").text
    assert click_and_wait_for_change("previous-page") == first

    # Labels from 9 leave no Bag: the chosen class stays offered, with a zero count.
    label_from.send_keys(Keys.CONTROL, "a")  # the modifier is held to the end of a send_keys
    label_from.send_keys(Keys.BACKSPACE, "9")
    wait.until(lambda driver: offered(driver, "class") == ["Ankle-boot (8)", "Bag (0)"])

    # Clear the filter (reset all), search with the image alone. More like this on a result of
    # another class (the one with most rows, so that its neighbours are on the page): it never
    # comes back, another row of its class shows, the likes name it.
    browser.find_element(By.ID, "reset-all").click()
    wait.until(ec.invisibility_of_element_located((By.ID, "business-usage")))
    wait.until(ec.element_to_be_clickable((By.ID, f"category-{TINY}"))).click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#upload input[type=file]"))).send_keys(
        str(query_image(indexed_home))
    )
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#input-image img")))
    plain = search_and_wait_for_change()
    assert len(plain) == 6 and plain[0]["class"] == "Ankle-boot", plain
    others = [row["class"] for row in plain if row["class"] != "Ankle-boot"]
    assert others, f"the plain page holds only ankle boots: {plain}"
    cls = max(others, key=others.count)
    liked = select_result(next(i for i, row in enumerate(plain) if row["class"] == cls))
    rows = click_and_wait_for_change("more-like-this")
    # The new page highlights no image (the steering buttons are off until one is selected).
    wait.until(lambda driver: not driver.find_elements(By.CSS_SELECTOR, "#results .thumbnail-item.selected"))
    assert not browser.find_element(By.ID, "more-like-this").is_enabled()
    feedback = browser.find_element(By.ID, "feedback").text
    assert "More like:" in feedback and liked["file"] in feedback and "Less like:" not in feedback
    assert liked["file"] not in {row["file"] for row in rows}, rows
    assert any(row["class"] == cls for row in rows), rows
    assert "recommend score" in rows[0] and "Results 1–6" in browser.find_element(By.ID, "page").text

    # Less like this on another result of that class: it leaves the page, its class does not grow
    # and does not lead; the liked result still stays away.
    disliked = select_result(next(i for i, row in enumerate(rows) if row["class"] == cls))
    steered = click_and_wait_for_change("less-like-this")
    feedback = browser.find_element(By.ID, "feedback").text
    assert "Less like:" in feedback and disliked["file"] in feedback and liked["file"] in feedback
    assert not {disliked["file"], liked["file"]} & {row["file"] for row in steered}, steered
    assert sum(row["class"] == cls for row in steered) <= sum(row["class"] == cls for row in rows), steered
    assert steered[0]["class"] != cls, steered

    # Clearing the likes and dislikes gives the plain search back.
    assert click_and_wait_for_change("clear-feedback") == plain
    assert "More like:" not in browser.find_element(By.ID, "feedback").text

    # The README's screenshot (the plain search: similarity and calibrated columns, the filters and
    # the caption box above): rewritten only when missing or asked for (it would dirty the tree on every run).
    refresh = not SCREENSHOT.exists() or os.environ.get("VISEARCH_UPDATE_SCREENSHOTS") == "1"
    save_full_page(browser, SCREENSHOT if refresh else tmp_path / "ui.png")


def test_unindexed_categories_are_disabled_and_browse_pages_through_a_category(server: str, browser) -> None:  # type: ignore[no-untyped-def]
    """Buttons of categories without an index are off and say how to index them; Browse pages, filters, picks."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(f"{server}/ui/")
    wait.until(ec.element_to_be_clickable((By.ID, f"category-{TINY}")))
    shoes = browser.find_element(By.ID, "category-shoes")
    wait.until(lambda driver: not shoes.is_enabled() and "not indexed" in shoes.text)
    status = wait.until(ec.visibility_of_element_located((By.ID, "index-status")))
    assert "visearch pipeline run -c shoes" in status.text and f"-c {TINY}" not in status.text

    def page_text() -> str:
        return browser.find_element(By.ID, "browse-page").text.strip()

    def thumbnails() -> int:
        return len(browser.find_elements(By.CSS_SELECTOR, "#browse-gallery img"))

    def click(element_id: str) -> None:
        browser.execute_script("arguments[0].click()", wait.until(ec.element_to_be_clickable((By.ID, element_id))))

    browser.find_element(By.ID, f"category-{TINY}").click()
    wait.until(ec.element_to_be_clickable((By.XPATH, "//button[@role='tab' and normalize-space()='Browse']"))).click()
    wait.until(lambda driver: page_text() == "Images 1–12" and thumbnails() == 12)
    assert not browser.find_element(By.ID, "browse-previous").is_enabled()
    seen = ["Images 1–12"]
    for expected in ("Images 13–24", "Images 25–36", "Images 37–40"):  # 40 images, 12 a page
        click("browse-next")
        wait.until(lambda driver, expected=expected: page_text() == expected)
        seen.append(page_text())
    wait.until(lambda driver: thumbnails() == 4 and not driver.find_element(By.ID, "browse-next").is_enabled())
    click("browse-previous")
    wait.until(lambda driver: page_text() == "Images 25–36" and thumbnails() == 12)

    # The category's filter controls narrow it: labels from 9 leave the eight ankle boots, one page.
    browser.find_element(By.CSS_SELECTOR, f"#browse-filter-{TINY}-label-from input").send_keys("9")
    click("browse-show")
    wait.until(lambda driver: page_text() == "Images 1–8" and thumbnails() == 8)
    assert not browser.find_element(By.ID, "browse-next").is_enabled()

    # A browsed image becomes the input image.
    browser.execute_script("arguments[0].click()", browser.find_elements(By.CSS_SELECTOR, "#browse-gallery img")[3])
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#input-image img")))
