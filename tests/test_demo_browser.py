"""The demo editor in a real browser (headless Chromium driven by Selenium, tier ``browser``): segment by a click,
add and name three keypoints, save, reload the folder with the demo loader, try a transfer and see the overlay.

Chromium and chromedriver come from Debian (``make setup`` installs them when root). Without them the test is
skipped with the reason, except where ``SOCO_REQUIRE_BROWSER=1`` (CI: ``.ci/run``), where that is a failure."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import demo_scene

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # ~40 s on a loaded 2-core machine

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
KEYPOINTS = (("handle_top", (226.0, 98.0)), ("rim_point/left", (118.0, 78.0)), ("rim_point/right", (182.0, 78.0)))
OFFSET = (30, 10)


def _browser_or_skip():
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if path is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e .[dev])")
    if missing:
        reason = f"{', '.join(missing)} not found (apt-get install chromium chromium-driver; make setup does it as root)"
        if os.environ.get("SOCO_REQUIRE_BROWSER") == "1":
            pytest.fail(f"SOCO_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)


def chrome(profile: Path, width: int = 1280, height: int = 1000):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                 f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture()
def editor(tmp_path):
    """A captured demo folder served by the editor on a free port, with the node's pipeline for 'try'."""
    _browser_or_skip()
    from correspondence.cli import main
    from correspondence.demo_editor.server import make_server
    from correspondence.demo_editor.session import EditorSession
    from soco_ros.preview import NodePreview, node_parameters

    files = demo_scene.write_files(tmp_path / "camera")
    folder = tmp_path / "demo"
    assert main(["demo", "capture", str(folder), "--rgb", str(files["rgb"]), "--depth-file", str(files["depth"]),
                 "--intrinsics", str(files["intrinsics"])]) == 0
    session = EditorSession(folder, preview=NodePreview(node_parameters(backbone="daisy")))
    server = make_server(session, 0, log=lambda text: None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    profile = Path(tempfile.mkdtemp(prefix="soco-chromium-"))
    driver = chrome(profile)
    try:
        yield driver, f"http://127.0.0.1:{server.server_address[1]}/", session, tmp_path
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()
        shutil.rmtree(profile, ignore_errors=True)


def click_image(driver, x: float, y: float, shift: bool = False) -> None:
    """Click image pixel (x, y) on the Konva stage (the page scales the image to fit)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    stage = driver.find_element(By.CSS_SELECTOR, "#stage canvas")
    offset = driver.execute_script("return window.editor.imageToPage(arguments[0], arguments[1]);", x, y)
    size = stage.size
    chain = ActionChains(driver).move_to_element_with_offset(stage, offset["x"] - size["width"] / 2,
                                                             offset["y"] - size["height"] / 2)
    if shift:
        chain = chain.key_down(Keys.SHIFT).click().key_up(Keys.SHIFT)
    else:
        chain = chain.click()
    chain.perform()


def drag_image(driver, x: float, y: float, dx_px: float, dy_px: float) -> None:
    """Press at image pixel (x, y), move by (dx_px, dy_px) screen pixels, release."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    stage = driver.find_element(By.CSS_SELECTOR, "#stage")
    offset = driver.execute_script("return window.editor.imageToPage(arguments[0], arguments[1]);", x, y)
    size = stage.size
    (ActionChains(driver).move_to_element_with_offset(stage, offset["x"] - size["width"] / 2,
                                                      offset["y"] - size["height"] / 2)
     .click_and_hold().move_by_offset(dx_px / 3, dy_px / 3).move_by_offset(dx_px - dx_px / 3, dy_px - dy_px / 3)
     .release().perform())


def idle(driver, timeout: float = 120.0) -> None:
    """Wait until the page has no request in flight."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: d.execute_script("return document.body.dataset.busy") in (None, "0"))


def test_segment_name_save_reload_and_try_in_chromium(editor):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from correspondence.demo_editor.segment import Clicks
    from correspondence.demo_spec import load_demo

    driver, url, session, tmp = editor
    steps: dict[str, float] = {}
    start = time.perf_counter()

    def step(name: str) -> None:
        steps[name] = round(time.perf_counter() - start - sum(steps.values()), 3)

    driver.get(url)
    WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")
    step("open the page")

    click_image(driver, 150.0, 120.0)  # segment tool is the default
    idle(driver)
    assert "depth" in driver.find_element(By.ID, "seg-info").text
    step("segment by a click")

    driver.find_element(By.ID, "tool-keypoint").click()
    Select(driver.find_element(By.ID, "category")).select_by_value("mug")
    for name, (x, y) in KEYPOINTS:
        click_image(driver, x, y)
        row = driver.find_elements(By.CSS_SELECTOR, "#keypoints li")[-1]
        Select(row.find_element(By.CSS_SELECTOR, "select.kp-name")).select_by_value(name)
    click_image(driver, 60.0, 200.0)  # a fourth, by mistake: undo takes it back
    assert len(driver.find_elements(By.CSS_SELECTOR, "#keypoints li")) == 4
    driver.find_element(By.ID, "undo").click()
    WebDriverWait(driver, 10).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#keypoints li")) == 3)
    drag_image(driver, *KEYPOINTS[0][1], 15, 9)  # move the first keypoint by (15, 9) screen px
    step("add and name three keypoints")

    driver.find_element(By.ID, "save").click()
    WebDriverWait(driver, 30).until(lambda d: "saved" in d.find_element(By.ID, "message").text)
    assert not driver.find_element(By.ID, "error").is_displayed()
    step("save")

    other = json.loads((session.folder / "keypoints.json").read_text())  # another process edits the demo
    other["category"] = "cup"
    (session.folder / "keypoints.json").write_text(json.dumps(other))
    driver.find_element(By.ID, "save").click()
    alert = WebDriverWait(driver, 30).until(EC.alert_is_present())
    assert "saved by another page or process" in alert.text
    alert.dismiss()  # keep the other version: the page says it did not save
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "error").is_displayed())
    assert "not saved" in driver.find_element(By.ID, "error").text
    assert load_demo(session.folder).keypoints.category == "cup"
    driver.find_element(By.ID, "save").click()
    WebDriverWait(driver, 30).until(EC.alert_is_present()).accept()  # now overwrite it on purpose
    WebDriverWait(driver, 30).until(lambda d: "saved" in d.find_element(By.ID, "message").text)
    step("a stale save refused, then overwritten on purpose")

    demo = load_demo(session.folder)  # the project's loader, as the node reads it
    assert demo.keypoints.category == "mug"
    assert [p.name for p in demo.keypoints.points] == [name for name, _ in KEYPOINTS]
    scale = driver.execute_script("return window.editor.scale")
    moved = [(x + 15 / scale, y + 9 / scale) if i == 0 else (x, y) for i, (_, (x, y)) in enumerate(KEYPOINTS)]
    np.testing.assert_allclose(demo.keypoints.xy, moved, atol=1.0 / scale + 1e-6)
    assert dict(demo.keypoints.points[1].identity) == {"left_right": "left"}
    expected = session.segmenter.segment(Clicks(((150.0 + 0.5 / scale, 120.0 + 0.5 / scale, 1),)))
    truth = demo_scene.draw()[2]
    assert (demo.mask ^ expected.mask).sum() <= 0.01 * expected.mask.sum()  # the page saved the mask it was sent
    assert (demo.mask & truth).sum() / (demo.mask | truth).sum() > 0.8  # and it is the object
    step("reload with the demo loader")

    live = tmp / "live.png"
    from PIL import Image
    Image.fromarray(demo_scene.draw(OFFSET)[0]).save(live)
    driver.find_element(By.ID, "live-file").send_keys(str(live))
    WebDriverWait(driver, 10).until(lambda d: "live image" in d.find_element(By.ID, "message").text)
    driver.find_element(By.ID, "try").click()
    WebDriverWait(driver, 300).until(lambda d: d.execute_script("return document.getElementById('overlay').complete "
                                                                "&& !document.getElementById('overlay').hidden")
                                     or d.find_element(By.ID, "error").is_displayed())
    assert not driver.find_element(By.ID, "error").is_displayed(), driver.find_element(By.ID, "error").text
    rows = driver.find_elements(By.CSS_SELECTOR, "#matches tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows] == [name for name, _ in KEYPOINTS]
    scores = [float(r.find_elements(By.TAG_NAME, "td")[1].text) for r in rows]
    assert all(-1.0 <= s <= 1.0 for s in scores)
    assert driver.execute_script("const i = document.getElementById('overlay'); return i.complete && i.naturalWidth") > 0
    step("try a transfer, see the overlay")

    steps["total"] = round(time.perf_counter() - start, 3)
    print("browser steps (s):", json.dumps(steps))
    if os.environ.get("SOCO_BROWSER_SCREENSHOT"):
        driver.save_screenshot(os.environ["SOCO_BROWSER_SCREENSHOT"])


def test_functional_demo_painted_in_chromium(editor):
    """Function + part: pick the function, paint its part with the brush, save; the loader reads the function and
    a part mask that covers the painted stroke (and nothing far from it)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from correspondence.demo_spec import load_demo

    driver, url, session, _ = editor
    driver.get(url)
    WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")
    driver.find_element(By.ID, "mode-functional").click()
    assert Select(driver.find_element(By.ID, "target")).first_selected_option.get_attribute("value") == "part"
    Select(driver.find_element(By.ID, "function")).select_by_value("pour-with")
    driver.find_element(By.ID, "tool-paint").click()
    scale = driver.execute_script("return window.editor.scale")
    drag_image(driver, 120.0, 80.0, 60 * scale, 0)  # a stroke along the rim, 60 image px long
    driver.find_element(By.ID, "save").click()
    WebDriverWait(driver, 30).until(lambda d: "saved" in d.find_element(By.ID, "message").text
                                    or d.find_element(By.ID, "error").is_displayed())
    assert "function 'pour-with'" in driver.find_element(By.ID, "message").text
    demo = load_demo(session.folder)
    assert demo.mode == "functional" and demo.function == "pour-with" and demo.mask is None
    row = demo.function_mask[80]
    assert row[123:178].all()  # the stroke, inside its ends
    ys, xs = np.nonzero(demo.function_mask)
    brush = 12  # the page's default brush width, image px
    assert xs.min() >= 120 - brush and xs.max() <= 180 + brush and ys.min() >= 80 - brush and ys.max() <= 80 + brush
