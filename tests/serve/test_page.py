"""The page, in a real Chromium against a real server: real drawings drawn stroke by stroke with
pointer events (mouse, pen and finger), the raw ink the page sends checked point by point, and
after every stroke the page's guesses checked against the server's own answer for the same
ink. A screenshot of each drawing is kept in the test's temporary folder."""

from __future__ import annotations

import json

import pytest

from bench.browser import draw_stroke, wait_for_guess
from tests.conftest import shared_quickdraw_or_skip
from tests.support.serving_fixtures import Server, export_tiny_model, predict, real_drawings

# Simplified drawings (0..255) scaled onto the 400-pixel canvas.
SCALE, MARGIN = 1.4, 20

# Records what the page sends to /predict, beside sending it.
RECORD_REQUESTS = """
window.sentBodies = [];
const send = window.fetch.bind(window);
window.fetch = (url, options) => {
  if (url === "/predict") window.sentBodies.push(JSON.parse(options.body));
  return send(url, options);
};
"""
CANVAS_INK = """
const canvas = document.querySelector('[data-testid="canvas"]');
const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
let inked = 0;
for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) inked++;
return inked;
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    shared_quickdraw_or_skip()
    directory = tmp_path_factory.mktemp("model")
    export_tiny_model(directory / "export")
    with Server(["--model_dir", str(directory)], directory / "server.log") as running:
        yield running


@pytest.fixture
def page(server, browser):
    browser.get(server.url + "/")
    return browser


def canvas_strokes(drawing, left: float, top: float) -> list[list[tuple[int, int]]]:
    """A simplified drawing's strokes as viewport pixels on the canvas at (left, top)."""
    strokes = []
    for xs, ys in (stroke[:2] for stroke in drawing):
        points = []
        for x, y in zip(xs, ys):
            point = (round(left + MARGIN + SCALE * x), round(top + MARGIN + SCALE * y))
            if not points or points[-1] != point:  # a pointer that does not move adds nothing
                points.append(point)
        strokes.append(points)
    return strokes


def shown_guesses(driver) -> list[tuple[str, str]]:
    items = driver.find_elements("css selector", '[data-testid="guesses"] li')
    return [tuple(item.text.rsplit(" ", 1)) for item in items]


@pytest.mark.parametrize("index, kind", [(0, "mouse"), (27, "pen"), (43, "touch")])
def test_guesses_while_drawing_equal_the_servers(page, server, tmp_path, index, kind):
    wait_for_classes(page)
    drawing = real_drawings(shared_quickdraw_or_skip(), "simplified", 50)[index]["drawing"]
    page.execute_script(RECORD_REQUESTS)
    rect = page.execute_script(
        "return document.querySelector('[data-testid=\"canvas\"]').getBoundingClientRect();"
    )
    strokes = canvas_strokes(drawing, rect["left"], rect["top"])
    drawn = []
    for count, stroke in enumerate(strokes, 1):
        draw_stroke(page, stroke, kind)
        # The page records the pointer's offset from the canvas's corner, per point.
        drawn.append([[x - rect["left"] for x, _ in stroke], [y - rect["top"] for _, y in stroke]])
        if sum(len(xs) for xs, _ in drawn) < 2:
            continue  # a lone dot is no drawing yet: the page asks nothing
        wait_for_guess(page, count)
        sent = [b for b in page.execute_script("return window.sentBodies;")]
        (instance,) = sent[-1]["instances"]
        ink = instance["drawing"]
        assert [[xs, ys] for xs, ys, _ in ink] == drawn
        times = [t for _, _, ts in ink for t in ts]
        assert times[0] == 0 and times == sorted(times)  # raw ink: milliseconds, in order

        status, answer = predict(
            server.port, {"instances": [{"drawing": ink}], "parameters": {"top_k": 4}}
        )
        assert status == 200, answer
        (expected,) = answer["predictions"]
        shown = shown_guesses(page)
        assert [label for label, _ in shown] == expected["labels"]
        assert [p for _, p in shown] == [f"{100 * p:.1f}%" for p in expected["probabilities"]]

    assert page.execute_script(CANVAS_INK) > 100  # the strokes are on the canvas
    latency = page.find_element("css selector", '[data-testid="guesses"]').get_attribute(
        "data-latency-ms"
    )
    assert float(latency) > 0
    screenshot = tmp_path / f"page-{kind}.png"
    assert page.save_screenshot(str(screenshot))
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    page.find_element("css selector", '[data-testid="clear"]').click()
    assert shown_guesses(page) == []
    assert page.execute_script(CANVAS_INK) == 0


def wait_for_classes(driver) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 30).until(
        lambda driver: driver.find_element("css selector", '[data-testid="classes"]').text
    )


def test_the_page_names_the_classes_it_knows(page):
    line = wait_for_classes(page)
    assert line == "I know 4 things: circle, hat, sock, zigzag."
    assert (
        json.loads(page.execute_script("return JSON.stringify(window.sentBodies || null)")) is None
    )
