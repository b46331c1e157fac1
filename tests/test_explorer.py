"""The latent-space explorer (geoae.explorer): the page's own forward pass, driven in headless Chromium.

Each page is written from run directories of tiny runs trained by the public trainer. The test moves the
code through the page's controls (sliders by value and by keyboard, number boxes, the 2-D pad by clicks and
arrow keys, the input controls), reads back what the page computed (``window.geoae.snapshot()``) and checks:

- its decoded float image equals ``model.decode(z)`` from Python within 1e-4 per pixel, z being the code the
  page used (and that code is the one the control set, or the run's own encoder's code of the chosen input);
- the native-resolution canvas holds those values in 8 bits (±1/255, grey, opaque);
- r̂ = √(Σx̂/π), the argmax and the distance to the Airy profile (bias-free runs) equal Python's;
- the page has no horizontal overflow at 1280 × 800 and at phone width (390 px); a full-page screenshot of
  each width is saved under ``test-artifacts/explorer/`` (ignored by git).

Without a browser (Debian's ``chromium`` + ``chromium-driver``, which ``make test`` installs where apt-get is
available) or without selenium the browser tests skip with the reason; the export tests always run.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from geoae import cli, explorer, theory
from geoae.data import DiracData, DiskData, render_diracs, render_disks
from geoae.models import ModelConfig, build_model, official_model_path
from geoae.spec import network_spec
from geoae.training import TrainConfig, TrainResult, load_run, run_name, train

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "explorer"
TOL = 1e-4  # per pixel, page vs Python
PHONE = (390, 844)


def _config(model: ModelConfig, data, *, iterations: int = 20, seed: int = 0) -> TrainConfig:
    return TrainConfig(model=model, data=data, iterations=iterations, batch_size=16, lr=1e-2, seed=seed,
                       log_every=5, checkpoint_every=1000)


# Pages of tiny runs: every architecture and decoder option the page implements.
PAGES = {
    "disks64": [_config(ModelConfig(size=64), DiskData(n=64)),
                _config(ModelConfig(size=64, bias=False), DiskData(n=64))],
    "disk-variants": [_config(ModelConfig(size=16, upsample="nearest", output_activation="identity"),
                              DiskData(n=64, size=16)),
                      _config(ModelConfig(size=16, bias=False, output_activation="sigmoid"),
                              DiskData(n=64, size=16, exclude=((3.0, 5.0),)))],
    "keras63": [_config(ModelConfig(arch="keras63", size=63), DiskData(n=64, size=63, rendering="gaussian"))],
    "diracs2d-position": [_config(ModelConfig(size=8, latent_dim=3, encoder="position", channels=(16, 16), coord=c),
                                  DiracData(size=8, ndim=2, scheme="quadrant")) for c in (False, True)],
    "diracs2d-d2": [_config(ModelConfig(size=8, latent_dim=2, channels=(16, 16)), DiracData(size=8, ndim=2))],
    "diracs1d-position": [_config(ModelConfig(arch="paper1d", size=16, latent_dim=2, encoder="position", coord=c),
                                  DiracData(size=16, ndim=1, scheme="stride")) for c in (False, True)],
    "diracs1d-d1": [_config(ModelConfig(arch="paper1d", size=16), DiracData(size=16, ndim=1))],
}


@pytest.fixture(scope="module")
def run_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("explorer-runs")
    for configs in PAGES.values():
        for c in configs:
            train(c, root / run_name(c))
    return root


def _runs(root: Path, name: str) -> list[TrainResult]:
    return [load_run(root / run_name(c)) for c in PAGES[name]]


# ------------------------------------------------------------------------------------ the browser


class Page:
    """One explorer page open in the browser, with the Python models it was written from."""

    def __init__(self, driver, path: Path, runs: list[TrainResult]):
        self.driver, self.runs = driver, runs
        self.models = [r.model.eval() for r in runs]
        driver.get(path.as_uri())
        self.data = driver.execute_script("const d = window.geoae.data; return {kind: d.kind, ndim: d.ndim, "
                                          "size: d.size, latent_dim: d.latent_dim, inputs: d.inputs};")
        self.d = self.data["latent_dim"]

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def snapshot(self) -> dict:
        return self.js("return window.geoae.snapshot();")

    def set_range(self, element_id: str, value) -> float:
        """Set a range input through its value and an input event (what a drag does); returns its value."""
        return float(self.js("const s = document.getElementById(arguments[0]); s.value = arguments[1]; "
                             "s.dispatchEvent(new Event('input', {bubbles: true})); return s.value;",
                             element_id, str(value)))

    def slider_limits(self, j: int) -> tuple[float, float]:
        lo, hi = self.js("const s = document.getElementById('z-slider-' + arguments[0]); return [s.min, s.max];", j)
        return float(lo), float(hi)

    def snapshot_and_canvases(self) -> tuple[dict, list[np.ndarray]]:
        """The page's snapshot and the RGBA bytes (H, W, 4) of each run's native-resolution canvas."""
        snap, pixels = self.js(
            "const s = window.geoae.snapshot(); return [s, s.runs.map(function (r, k) { "
            "const c = document.getElementById('native-' + k); "
            "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); })];")
        return snap, [np.asarray(p, dtype=np.int64).reshape(r["h"], r["w"], 4) for p, r in zip(pixels, snap["runs"],
                                                                                             strict=True)]

    def check(self, *, z=None, codes=None) -> dict:
        """Compare everything the page computed with Python; ``z``: the code every run must decode, ``codes``:
        one code per run. Returns the snapshot."""
        snap, canvases = self.snapshot_and_canvases()
        assert len(snap["runs"]) == len(self.models)
        for k, (run, model) in enumerate(zip(snap["runs"], self.models, strict=True)):
            z_page = np.asarray(run["z"], dtype=np.float32)
            want = z if z is not None else (codes[k] if codes is not None else None)
            if want is not None:
                np.testing.assert_allclose(z_page, np.asarray(want, dtype=np.float32), rtol=1e-6, atol=1e-6)
            with torch.no_grad():
                x = model.decode(torch.from_numpy(z_page)[None])[0, 0].double().numpy()
            x = x.reshape(run["h"], run["w"])
            x_page = np.asarray(run["image"], dtype=np.float64).reshape(run["h"], run["w"])
            err = np.abs(x_page - x).max()
            assert err <= TOL, f"run {k}: the page's image differs from model.decode by {err}"
            pix = canvases[k]
            assert (pix[..., 3] == 255).all(), "the canvas must be opaque"
            assert (pix[..., 0] == pix[..., 1]).all() and (pix[..., 1] == pix[..., 2]).all(), "grey levels"
            grey = pix[..., 0] / 255.0
            assert np.abs(grey - np.clip(x_page, 0, 1)).max() <= 1 / 255 + 1e-9, f"run {k}: canvas is not x̂ in 8 bits"
            if self.data["kind"] == "disks":
                assert run["rhat"] == pytest.approx(math.sqrt(max(x_page.sum(), 0.0) / math.pi), rel=1e-9)
            flat = x_page.ravel()
            if np.sum(flat == flat.max()) == 1:  # a unique maximum: the page's argmax is Python's
                assert list(np.unravel_index(flat.argmax(), x_page.shape)[-len(run["argmax"]):]) == run["argmax"]
            if run["airy_distance"] is not None:
                data = self.runs[k].config.data
                R = data.size / 2 if data.r_max is None else data.r_max
                assert run["airy_distance"] == pytest.approx(theory.profile_distance(x_page, R), rel=1e-6)
        return snap

    def encoder_codes(self, index: int) -> list[np.ndarray]:
        """Each run's encoder on the page's input number ``index`` (a radius or a position), from Python."""
        value = self.data["inputs"][index]
        out = []
        for run, model in zip(self.runs, self.models, strict=True):
            data = run.config.data
            if self.data["kind"] == "disks":
                x = render_disks(torch.tensor([value]), size=data.size, rendering=data.rendering, sigma=data.sigma)
            else:
                x = render_diracs(torch.tensor([value]), size=data.size, ndim=data.ndim)
            with torch.no_grad():
                out.append(model.encode(x)[0].numpy())
        return out

    def no_console_errors(self):
        errors = [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors

    def overflow(self) -> int:
        """How many CSS pixels the page is wider than the viewport (0: no horizontal scrolling)."""
        return int(self.js("return document.documentElement.scrollWidth - document.documentElement.clientWidth;"))

    def screenshot(self, path: Path):
        metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": metrics["width"], "height": metrics["height"], "scale": 1}
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                                      "clip": clip})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))


def _open(browser, runs: list[TrainResult], name: str, title: str) -> Page:
    """Write the page (kept under test-artifacts/ with its screenshots) and open it."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.html"
    path.write_text(explorer.explorer_html(runs, title=title), encoding="utf-8")
    return Page(browser, path, runs)


def _drive_code_controls(page: Page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    driver, d = page.driver, page.d
    decoded = []
    for j in range(d):  # z1's slider at its two ends and inside, the others inside (by value + input event)
        lo, hi = page.slider_limits(j)
        for t in (0.0, 0.37, 1.0) if j == 0 else (0.6,):
            want = page.snapshot()["runs"][0]["z"]  # the other entries keep their values
            want[j] = page.set_range(f"z-slider-{j}", lo + t * (hi - lo))
            assert want[j] == pytest.approx(lo + t * (hi - lo), abs=1.01 * (hi - lo) / 1000)  # one step
            decoded.append(page.check(z=want)["runs"][0]["image"])
    slider = driver.find_element("id", "z-slider-0")  # keyboard: End, then three steps left
    slider.send_keys(Keys.END)
    lo, hi = page.slider_limits(0)
    step = (hi - lo) / 1000
    z_end = float(slider.get_attribute("value"))
    assert z_end >= hi - 1.01 * step
    assert page.check()["runs"][0]["z"][0] == pytest.approx(np.float32(z_end), rel=1e-6, abs=1e-7)
    slider.send_keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT, Keys.ARROW_LEFT)
    z0 = float(slider.get_attribute("value"))
    assert z0 == pytest.approx(z_end - 3 * step, abs=0.01 * step)
    assert page.check()["runs"][0]["z"][0] == pytest.approx(np.float32(z0), rel=1e-6, abs=1e-7)
    box = driver.find_element("id", "z-number-0")  # an exact value typed in, beyond the slider's range
    typed = hi + 0.5 * (hi - lo)
    box.clear()
    box.send_keys(f"{typed:.6g}", Keys.ENTER)
    want = page.snapshot()["runs"][0]["z"]
    want[0] = float(np.float32(float(f"{typed:.6g}")))
    decoded.append(page.check(z=want)["runs"][0]["image"])
    images = np.asarray(decoded)
    assert np.abs(images).max() > 1e-3 and np.ptp(images, axis=0).max() > 1e-3, \
        "the decoded images are all zero or do not move with z: the comparison would prove nothing"
    if d >= 2:  # the 2-D pad: clicks at three places, then arrow keys
        pad = driver.find_element("id", "code-pad")
        page.js("arguments[0].scrollIntoView({block: 'center'});", pad)
        w, h = pad.size["width"], pad.size["height"]
        (alo, ahi), (blo, bhi) = page.slider_limits(d - 1), page.slider_limits(d - 2)
        for u, v in ((0.2, 0.3), (0.5, 0.5), (0.85, 0.7)):
            x, y = int((u - 0.5) * w), int((v - 0.5) * h)
            ActionChains(driver).move_to_element_with_offset(pad, x, y).click().perform()
            z = page.check()["runs"][0]["z"]
            assert z[d - 1] == pytest.approx(alo + u * (ahi - alo), abs=2.5 * (ahi - alo) / w)  # x: z_d, right
            assert z[d - 2] == pytest.approx(blo + v * (bhi - blo), abs=2.5 * (bhi - blo) / h)  # y: z_(d-1), down
        before = page.snapshot()["runs"][0]["z"]
        pad.send_keys(Keys.ARROW_RIGHT)
        pad.send_keys(Keys.SHIFT, Keys.ARROW_UP)
        after = page.check()["runs"][0]["z"]
        assert after[d - 1] == pytest.approx(before[d - 1] + 0.01 * (ahi - alo), rel=1e-5, abs=1e-6)
        assert after[d - 2] == pytest.approx(before[d - 2] - 0.1 * (bhi - blo), rel=1e-5, abs=1e-6)


def _drive_input_controls(page: Page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    n = len(page.data["inputs"])
    if page.data["kind"] == "diracs" and page.data["ndim"] == 2:
        pad, m = page.driver.find_element("id", "position-pad"), page.data["size"]
        page.js("arguments[0].scrollIntoView({block: 'center'});", pad)
        w, h = pad.size["width"], pad.size["height"]
        for row, col in ((0, 0), (m - 1, 2), (m // 2, m - 1)):
            x, y = int(((col + 0.5) / m - 0.5) * w), int(((row + 0.5) / m - 0.5) * h)
            ActionChains(page.driver).move_to_element_with_offset(pad, x, y).click().perform()
            snap = page.check(codes=page.encoder_codes(row * m + col))
            assert snap["mode"] == "input" and snap["input"] == [row, col]
        pad.send_keys(Keys.ARROW_LEFT)
        assert page.check(codes=page.encoder_codes(m // 2 * m + m - 2))["input"] == [m // 2, m - 2]
        return
    for index in (0, n // 3, n - 1):
        page.set_range("input-slider", index)
        snap = page.check(codes=page.encoder_codes(index))
        assert snap["mode"] == "input" and snap["input"] == pytest.approx(page.data["inputs"][index])
    page.driver.find_element("id", "input-slider").send_keys(Keys.ARROW_LEFT)
    page.check(codes=page.encoder_codes(n - 2))


def _viewports_and_screenshots(page: Page, name: str):
    assert page.overflow() <= 0, "horizontal scrolling at 1280 × 800"
    page.screenshot(ARTIFACTS / f"{name}-1280.png")
    page.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                {"width": PHONE[0], "height": PHONE[1], "deviceScaleFactor": 1, "mobile": True})
    try:
        page.js("window.dispatchEvent(new Event('resize'));")
        assert page.overflow() <= 0, f"horizontal scrolling at phone width {PHONE[0]} px"
        page.screenshot(ARTIFACTS / f"{name}-phone.png")
    finally:
        page.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@pytest.mark.parametrize("name", list(PAGES))
def test_page_decodes_like_python(browser, run_root, name):
    runs = _runs(run_root, name)
    page = _open(browser, runs, name, title=f"test page {name}")
    page.no_console_errors()
    page.check()  # the initial state
    _drive_code_controls(page)
    _drive_input_controls(page)
    _viewports_and_screenshots(page, name)
    page.no_console_errors()


def test_official_model_page(browser):
    """The authors' trained keras63 disk model (real disks, not a few iterations): drawn like Python's."""
    if official_model_path() is None:
        pytest.skip("the authors' weights (shared/reference/official_disk_model) are not here")
    pytest.importorskip("h5py", reason="h5py reads the authors' Keras weights")
    from geoae.models import load_official_model

    config = _config(ModelConfig(arch="keras63", size=63, alpha=0.05), DiskData(n=300, size=63, rendering="gaussian"))
    run = TrainResult(config, load_official_model(), [], {})
    page = _open(browser, [run], "official", title="the authors' disk model")
    page.no_console_errors()
    for r in (4.0, 10.0, 25.0):  # disks through the authors' encoder, then their decoder (r ≤ 2 decodes to nothing)
        index = page.data["inputs"].index(r)
        page.set_range("input-slider", index)
        snap = page.check(codes=page.encoder_codes(index))
        assert snap["runs"][0]["rhat"] == pytest.approx(r, abs=0.6)
    _viewports_and_screenshots(page, "official")


# ------------------------------------------------------------------------------ export (no browser)


def _page_json(text: str) -> dict:
    start = text.index('<script id="geoae-data" type="application/json">') + len(
        '<script id="geoae-data" type="application/json">')
    return json.loads(text[start:text.index("</script>", start)])


def test_export_is_self_contained_and_inlines_the_weights(run_root, tmp_path):
    dirs = [run_root / run_name(c) for c in PAGES["disks64"]]
    out = explorer.write_explorer(dirs, tmp_path / "e.html", title="two <runs>")
    text = out.read_text()
    for remote in ("http://", "https://", "src=", "@import", "fetch("):
        assert remote not in text.replace("http://www.w3.org", ""), f"the page refers to {remote!r}"
    assert "<title>two &lt;runs&gt;</title>" in text
    data = _page_json(text)
    assert [r["label"] for r in data["runs"]] == ["bias=true", "bias=false"]
    model = load_run(dirs[1]).model
    w = np.frombuffer(base64.b64decode(data["runs"][1]["layers"][-1]["weight"]), dtype="<f4")
    np.testing.assert_array_equal(w, model.decoder[-2].weight.detach().numpy().ravel())
    assert data["runs"][1]["airy"]["R"] == 32.0 and data["runs"][0]["airy"] is None


@pytest.mark.parametrize("config", [ModelConfig(size=16), ModelConfig(arch="paper1d", size=16, coord=True),
                                    ModelConfig(arch="keras63", size=63), ModelConfig(size=8, latent_dim=3,
                                                                                      encoder="position")])
def test_every_architecture_is_supported(config):
    assert explorer.supports(network_spec(config)) is None


@pytest.mark.parametrize("change, feature", [
    ({"op": "conv", "upsample": None}, "conv "), ({"activation": "tanh"}, "act:tanh"),
    ({"upsample": "bilinear"}, "upconv:bilinear"), ({"kernel": 17}, "kernel:17")])
def test_unsupported_decoders_are_refused_before_any_work(change, feature):
    model = build_model(ModelConfig(size=16))
    spec = model.spec
    model.spec = dataclasses.replace(spec, layers=(*spec.encoder, dataclasses.replace(spec.decoder[0], **change),
                                                   *spec.decoder[1:]))
    with pytest.raises(ValueError, match=f"the explorer cannot draw this decoder: it has features {feature}"):
        explorer.decoder_layers(model)
    run = TrainResult(_config(ModelConfig(size=16), DiskData(n=8, size=16)), model, [], {})
    with pytest.raises(ValueError, match="cannot draw"):
        explorer.page_data([run], title="refused")


def test_runs_that_cannot_share_controls_are_refused(run_root, tmp_path):
    with pytest.raises(ValueError, match="latent_dim differs"):
        explorer.write_explorer([run_root / run_name(PAGES["diracs2d-d2"][0]),
                                 run_root / run_name(PAGES["diracs2d-position"][0])], tmp_path / "x.html")
    with pytest.raises(ValueError, match="data kind differs"):
        explorer.write_explorer([run_root / run_name(PAGES["disks64"][0]),
                                 run_root / run_name(PAGES["diracs2d-d2"][0])], tmp_path / "x.html")
    with pytest.raises(ValueError, match="not a finished run directory"):
        explorer.write_explorer([tmp_path], tmp_path / "x.html")
    with pytest.raises(ValueError, match="labels must give one name per run"):
        explorer.write_explorer([run_root / run_name(PAGES["disks64"][0])], tmp_path / "x.html", labels=["a", "b"])
    assert not (tmp_path / "x.html").exists()


def test_cli_explore(run_root, tmp_path, capsys):
    dirs = [str(run_root / run_name(c)) for c in PAGES["diracs1d-position"]]
    out = tmp_path / "p.html"
    assert cli.main(["explore", *dirs, "--out", str(out), "--label", "plain", "--label", "coord"]) == 0
    assert [r["label"] for r in _page_json(out.read_text())["runs"]] == ["plain", "coord"]
    assert f"wrote {out}" in capsys.readouterr().out
    assert cli.main(["explore", dirs[0], "--out", str(tmp_path / "p.png")]) == 2
    assert cli.main(["explore", str(tmp_path), "--out", str(out)]) == 2
    assert "not a finished run directory" in capsys.readouterr().err


def test_reproduce_writes_explorers_linked_from_the_report(run_root, tmp_path):
    """explorers_for_results reads each results.json's configs and finds the runs under runs/<profile>/."""
    from geoae.report import build_report

    profile = "tiny"
    runs = tmp_path / "runs" / profile
    configs = {"D1": PAGES["disks64"][:1], "D5": PAGES["disks64"],
               "P3": PAGES["diracs1d-position"] + PAGES["diracs1d-d1"]}
    for exp_id, cs in configs.items():
        for c in cs:
            if not (runs / run_name(c)).exists():
                shutil.copytree(run_root / run_name(c), runs / run_name(c))
        rec = {"id": exp_id, "status": "failed", "error": "not analysed in this test", "profile": profile,
               "seeds": [0], "configs": [c.to_dict() for c in cs]}
        (tmp_path / exp_id).mkdir()
        (tmp_path / exp_id / "results.json").write_text(json.dumps(rec))
    assert explorer.explorers_for_results(tmp_path) == []  # failed experiments get no page
    for exp_id in configs:
        path = tmp_path / exp_id / "results.json"
        ok = {"status": "ok", "verdict": "confirmed", "rule": "(a test record)", "numbers": {}, "descriptions": {}}
        path.write_text(json.dumps(json.loads(path.read_text()) | ok))
    links = explorer.explorers_for_results(tmp_path)
    files = [link.file for link in links]
    assert files == ["explorer_D1.html", "explorer_D5.html", "explorer_P3_1d-diracs-16-d2-position.html",
                     "explorer_P3_1d-diracs-16-d1.html"], links
    assert len(_page_json((tmp_path / "explorer_D5.html").read_text())["runs"]) == 2
    shutil.rmtree(runs / run_name(PAGES["disks64"][1]))  # a missing run: the page says why, the rest is written
    broken = {link.file: link for link in explorer.explorers_for_results(tmp_path)}
    assert None in broken and "not a finished run directory" in broken[None].error
    html_text = explorer.links_html(links)
    assert all(f'href="{f}"' in html_text for f in files)
    # the report links the pages (build_report calls explorers_for_results)
    shutil.copytree(run_root / run_name(PAGES["disks64"][1]), runs / run_name(PAGES["disks64"][1]))
    build_report(tmp_path)
    report = (tmp_path / "report.html").read_text()
    assert all(f'href="{f}"' in report for f in files)
