"""The pages in a real browser (Debian's chromium, headless, driven by selenium): search box,
as-you-type suggestions, the misuse page, a rule page. Screenshots go to tests/artifacts/.

Outside CI the test is skipped when /usr/bin/chromium is missing; in CI (env CI set) a
missing browser, driver or selenium is a failure, since CI installs them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from live import running

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PSR_TITLE = "Screen Capture Activity Via Psr.EXE"
TIMEOUT = 15


def _require_browser() -> None:
    if not CHROMIUM.exists() and not os.environ.get("CI"):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium chromium-driver)")
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[test]')")
    if missing:
        pytest.fail("the browser test needs " + ", ".join(missing))


@pytest.fixture(scope="module")
def base_url(tip_data_dir: Path) -> Iterator[str]:
    with running(tip_data_dir) as (base, _api):
        yield base


@pytest.fixture()
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # never let selenium-manager download anything
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-proxy-server",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def test_search_suggest_misuse_page_rule_page(browser: Any, base_url: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, TIMEOUT)
    browser.get(base_url + "/")
    box = wait.until(ec.presence_of_element_located((By.ID, "q")))
    shot(browser, "01-home")

    box.send_keys("psr")
    suggestion = wait.until(
        ec.element_to_be_clickable((By.XPATH, "//ul[@id='suggestions']/li/a[normalize-space()='psr.exe']"))
    )
    shot(browser, "02-suggestions")
    suggestion.click()

    wait.until(ec.url_to_be(base_url + "/binary/psr.exe"))
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "table.mentions.lolbas")))
    assert browser.find_element(By.TAG_NAME, "h1").text == "psr.exe"
    assert browser.find_element(By.CSS_SELECTOR, ".n-detecting").text == "1"
    sigma_rule = browser.find_element(By.CSS_SELECTOR, "table.mentions.sigma a.rule-link")
    assert sigma_rule.text == PSR_TITLE
    sigma_rows = browser.find_elements(By.CSS_SELECTOR, "table.mentions.sigma tr.m")
    assert any("Image|endswith" in row.text and "Psr.exe" in row.text for row in sigma_rows)
    marks = browser.find_elements(By.CSS_SELECTOR, "table.mentions.sigma mark")
    assert marks and all(m.text.lower() == "psr.exe" for m in marks)
    lolbas_rows = browser.find_elements(By.CSS_SELECTOR, "table.mentions.lolbas tr.m")
    assert any("psr.exe /start" in row.text for row in lolbas_rows)
    assert any(row.text.split()[1:2] == ["IOC"] for row in lolbas_rows)
    shot(browser, "03-binary-psr.exe")

    sigma_rule.click()
    title = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "h1.rule-title")))
    assert title.text == PSR_TITLE
    assert "/rule/" in browser.current_url
    assert browser.find_element(By.LINK_TEXT, "psr.exe").get_attribute("href") == base_url + "/binary/psr.exe"
    shot(browser, "04-rule")

    # The pages raised no console error: no CSP violation, no failed script (a favicon 404 is fine).
    errors = [
        entry
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and "favicon.ico" not in entry["message"]
    ]
    assert errors == []


def test_binary_page_leads_with_verdicts_and_coverage_draws_tiers(browser: Any, base_url: str) -> None:
    """What a person sees first: certutil.exe's detecting rules by verdict (retired last and
    marked); the coverage charts, each square a link that leads to the entry's page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, TIMEOUT)
    browser.get(base_url + "/binary/certutil.exe")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "section.verdicts .vblock")))
    sigma = next(
        s
        for s in browser.find_elements(By.CSS_SELECTOR, "section.verdicts")
        if "sigma" in s.find_element(By.CSS_SELECTOR, "h2").text.lower()
    )  # each rule set has its section (Elastic's too)
    first = sigma.find_element(By.CSS_SELECTOR, ".vblock")
    assert first.find_element(By.CSS_SELECTOR, ".vname").text == "runs"
    items = first.find_elements(By.CSS_SELECTOR, "ol.rules li")
    retired = [i for i, li in enumerate(items) if "retired" in (li.get_attribute("class") or "")]
    assert retired and retired == list(range(len(items) - len(retired), len(items)))  # last, and marked
    assert all(items[i].find_element(By.CSS_SELECTOR, ".badge.retired").text for i in retired)
    shot(browser, "06-binary-certutil-verdicts")

    browser.get(base_url + "/coverage")
    squares = wait.until(ec.presence_of_all_elements_located((By.CSS_SELECTOR, "svg.chart.waffle a rect.cell")))
    assert len(squares) > 200 and squares[0].size["width"] > 5  # drawn, visible
    shot(browser, "07-coverage")
    squares[0].click()  # a square is a link
    wait.until(ec.url_contains("/binary/"))
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "section.summary")))
    errors = [
        entry
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and "favicon.ico" not in entry["message"]
    ]
    assert errors == []


def test_search_form_works_without_suggestions(browser: Any, base_url: str) -> None:
    """The basic flow needs no script: submitting the form lands on the grouped results."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, TIMEOUT)
    browser.get(base_url + "/")
    box = wait.until(ec.presence_of_element_located((By.ID, "q")))
    box.send_keys("cert*.exe", Keys.ENTER)
    wait.until(ec.url_contains("/search?q=cert"))
    heads = browser.find_elements(By.CSS_SELECTOR, "tr.rule-head")
    assert len(heads) > 5
    assert browser.find_elements(By.LINK_TEXT, "certutil.exe")
    shot(browser, "05-search-cert")


def test_missing_browser_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        module._require_browser()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no-chromium"):
        module._require_browser()
