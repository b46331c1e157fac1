"""Fixtures shared by test files: a headless Chromium (the explorer's and the report's layout tests)."""

import shutil
from pathlib import Path

import pytest

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


def _which(*names: str) -> str | None:
    for n in names:
        path = shutil.which(n) or (f"/usr/bin/{n}" if Path(f"/usr/bin/{n}").is_file() else None)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium driven by selenium (Debian's chromium and chromium-driver: nothing is downloaded);
    the test skips, with the reason, where either is missing."""
    binary, driver = _which("chromium", "chromium-browser"), _which("chromedriver")
    if binary is None or driver is None:
        pytest.skip("no browser found: the browser tests need Debian's chromium and chromium-driver "
                    "(`apt-get install chromium chromium-driver`; `make test` installs them where it can)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
                 "--window-size=1280,800"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(driver), options=options)  # paths given: nothing is downloaded
    yield drv
    drv.quit()
