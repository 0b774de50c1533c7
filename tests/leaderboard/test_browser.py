"""The built site in real headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium): no console errors, the expected rows per group, sorting by a column header, a
filter hiding other groups, and one chart series per ticked row. Saves a screenshot (also
copied to $SEQEDIT_SCREENSHOT_DIR when set)."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.leaderboard.conftest import site_sources

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

if not (CHROMIUM and DRIVER):
    if os.environ.get("CI"):
        raise RuntimeError("CI needs chromium and chromium-driver (.ci/run installs them with apt)")
    pytest.skip("headless Chromium is not installed here (apt-get install chromium "
                "chromium-driver); CI installs it and runs this test", allow_module_level=True)

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1600,1500", "--allow-file-access-from-files"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER),
                              options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture()
def page(browser, built_site):
    browser.get((built_site / "index.html").as_uri())
    browser.get_log("browser")  # start each test with an empty console log
    browser.refresh()
    return browser


def _rows(driver):
    return driver.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr")


def _expected_rows(tmp_path: Path) -> Counter:
    """(model, n_edits, batch size, timing) -> cells × variants, read from cells.jsonl."""
    out: Counter = Counter()
    for folder in site_sources(tmp_path):
        for line in (folder / "cells.jsonl").read_text().splitlines():
            cell = json.loads(line)
            if cell["status"] == "completed":
                s = cell["spec"]
                key = (s["model"], s["n_edits"], s["batch_size"], s["evaluation"]["timing"])
                out[key] += len(s["variants"])
    return out


def test_no_console_errors(page):
    severe = [e for e in page.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []


def test_table_holds_the_expected_rows_per_group(page, tmp_path):
    groups: dict[str, set] = {}
    counts: Counter = Counter()
    for tr in _rows(page):
        key = (tr.get_attribute("data-model"), int(tr.get_attribute("data-n-edits")),
               int(tr.get_attribute("data-batch-size")), tr.get_attribute("data-timing"))
        groups.setdefault(tr.get_attribute("data-group"), set()).add(key)
        counts[key] += 1
    assert all(len(keys) == 1 for keys in groups.values())  # one group, one comparable setting
    assert counts == _expected_rows(tmp_path)
    for group in groups:  # ranks 1..k inside each group
        ranks = [int(tr.get_attribute("data-rank")) for tr in _rows(page)
                 if tr.get_attribute("data-group") == group]
        assert ranks == list(range(1, len(ranks) + 1))


def _column_values(driver, key: str) -> list[tuple[str, float | None]]:
    headers = driver.find_elements(By.CSS_SELECTOR, "#leaderboard thead th")
    index = [h.get_attribute("data-key") for h in headers].index(key)
    out = []
    for tr in _rows(driver):
        raw = tr.find_elements(By.TAG_NAME, "td")[index].get_attribute("data-sort")
        out.append((tr.get_attribute("data-group"), float(raw) if raw else None))
    return out


def test_clicking_a_header_reorders_rows_by_that_column(page):
    before = [tr.get_attribute("data-id") for tr in _rows(page)]
    header = page.find_element(By.CSS_SELECTOR, '#leaderboard th[data-key="locality"]')
    for direction in ("descending", "ascending"):
        header.click()
        assert header.get_attribute("aria-sort") == direction
        values = _column_values(page, "locality")
        for group in {g for g, _ in values}:
            got = [v for g, v in values if g == group and v is not None]
            assert got == sorted(got, reverse=direction == "descending")
    assert [tr.get_attribute("data-id") for tr in _rows(page)] != before


def test_a_group_filter_hides_the_other_groups(page):
    select = Select(page.find_element(By.ID, "filter-group"))
    chosen = select.options[2].get_attribute("value")
    select.select_by_value(chosen)
    shown = [tr for tr in _rows(page) if tr.is_displayed()]
    hidden = [tr for tr in _rows(page) if not tr.is_displayed()]
    assert shown and hidden
    assert {tr.get_attribute("data-group") for tr in shown} == {chosen}
    assert chosen not in {tr.get_attribute("data-group") for tr in hidden}


def test_the_chart_draws_one_series_per_ticked_row(page, tmp_path):
    Select(page.find_element(By.ID, "chart-metric")).select_by_value("editing/counterfact/efficacy")
    boxes = page.find_elements(By.CSS_SELECTOR, ".plot-toggle")
    for box in boxes:
        if box.is_selected():
            box.click()
    assert page.find_elements(By.CSS_SELECTOR, "#chart g.series") == []
    picked = [boxes[i] for i in (0, 1, 3, 9)]
    for box in picked:
        box.click()
    series = page.find_elements(By.CSS_SELECTOR, "#chart g.series")
    assert sorted(s.get_attribute("data-row") for s in series) == \
        sorted(b.get_attribute("value") for b in picked)
    for s in series:  # a line, a band and a point per checkpoint
        assert s.find_elements(By.TAG_NAME, "polyline")
        assert s.find_elements(By.TAG_NAME, "polygon")
    _screenshot(page, tmp_path)


def _screenshot(driver, tmp_path: Path) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1600, min(int(height) + 150, 4000))  # the whole page
    path = tmp_path / "leaderboard.png"
    assert driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    if target := os.environ.get("SEQEDIT_SCREENSHOT_DIR"):
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(target) / path.name)
