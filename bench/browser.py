"""A real Chromium for the page's tests and benchmark: Debian's `chromium`, driven by Selenium
through Debian's `chromium-driver`, headless, on a fresh profile, kept off every network but
the page's own server.

    driver = start_chromium(tmp_path)  # BrowserMissing, saying why, where none is installed
    draw_stroke(driver, [(x, y), ...])  # viewport pixels, as a mouse, pen or finger would
    wait_for_guess(driver, strokes=3)  # the page shows its guess for the first 3 strokes
"""

from __future__ import annotations

import shutil
from pathlib import Path

# Without the background-networking flags Chromium reaches for Google's services at start.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1000,800",
)
INSTALL = "apt-get install -y chromium chromium-driver"


class BrowserMissing(RuntimeError):
    """Chromium or its driver is not installed here."""


def chromium_paths() -> tuple[str, str] | None:
    """(browser, driver) where both are installed, else None."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def start_chromium(directory: Path):
    """A headless Chromium whose profile and driver log live in `directory`; BrowserMissing
    where Chromium or its driver is not installed."""
    paths = chromium_paths()
    if paths is None:
        raise BrowserMissing(f"no chromium and chromedriver here ({INSTALL})")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = paths
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={directory / 'chromium-profile'}")
    # Both paths given: Selenium Manager, which would download a driver, is never asked.
    service = Service(executable_path=driver, log_output=str(directory / "chromedriver.log"))
    return webdriver.Chrome(options=options, service=service)


def draw_stroke(driver, points: list[tuple[int, int]], kind: str = "mouse") -> None:
    """One stroke through the given viewport points: pointer down, moves, pointer up.

    `kind` is the pointer: "mouse", "pen" or "touch" (the page has one code path for all).
    """
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    kinds = {
        "mouse": interaction.POINTER_MOUSE,
        "pen": interaction.POINTER_PEN,
        "touch": interaction.POINTER_TOUCH,
    }
    pointer = PointerInput(kinds[kind], kind)
    builder = ActionBuilder(driver, mouse=pointer, duration=0)
    actions = builder.pointer_action
    actions.move_to_location(*points[0])
    actions.pointer_down()
    for x, y in points[1:]:
        actions.move_to_location(x, y)
    actions.pointer_up()
    builder.perform()


def guesses_state(driver) -> dict:
    """What the page's guesses are about: `strokes` drawn, whether the pen was up, and the
    milliseconds from the stroke's end to the guess on screen (as the page measured them)."""
    return driver.execute_script(
        "const data = document.querySelector('[data-testid=\"guesses\"]').dataset;"
        "return {strokes: data.strokes, penUp: data.penUp, latencyMs: data.latencyMs};"
    )


def wait_for_guess(driver, strokes: int, timeout_s: float = 30) -> dict:
    """Waits until the page shows its guess for the first `strokes` strokes, pen up; returns
    `guesses_state`."""
    from selenium.webdriver.support.ui import WebDriverWait

    def shown(driver):
        state = guesses_state(driver)
        return state if state["strokes"] == str(strokes) and state["penUp"] == "true" else None

    return WebDriverWait(driver, timeout_s, poll_frequency=0.01).until(
        shown, f"no guess shown for stroke {strokes}"
    )
