"""One real-browser smoke test of the control panel: JupyterLab started by `cllm panel` on 127.0.0.1, driven by Debian's
chromium through playwright. Create two tiny models, start one without data (refused, and the message goes with the
model), upload a corpus to the other, train, read and zoom the live plot, stop, grow a layer and train again, check the
disk."""
import json, os, re, shutil, subprocess, sys, time
from pathlib import Path
import pytest
from conftest import BIN, ROOT, cllm_env

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.browser


@pytest.fixture
def lab(tmp_path):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CLLM_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing (.ci/run installs it with apt)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    home = tmp_path / "home"
    jdir = tmp_path / "jupyter"
    env = cllm_env(home)
    env.update(
        JUPYTER_CONFIG_DIR=str(jdir / "config"),
        JUPYTER_DATA_DIR=str(jdir / "data"),
        JUPYTER_RUNTIME_DIR=str(jdir / "runtime"),
        IPYTHONDIR=str(jdir / "ipython"),
        MPLCONFIGDIR=str(jdir / "mpl"),
        JUPYTER_PLATFORM_DIRS="1",
    )
    settings = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings"
    settings.mkdir(parents=True, exist_ok=True)
    over = settings / "overrides.json"
    if not over.exists():   # silence the news toast that would cover the panel
        over.write_text(
            json.dumps(
                {"@jupyterlab/apputils-extension:notification": {"checkForUpdates": False, "fetchNews": "false"}}
            )
        )
    proc = subprocess.Popen(
        [str(BIN / "cllm"), "panel"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    url = None
    t0 = time.time()
    while time.time() - t0 < 120:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        m = re.search(r"(http://127\.0\.0\.1:\d+/lab/tree/panel\.ipynb\?token=\w+)", line)
        if m:
            url = m.group(1)
            break
    assert url, f"cllm panel did not print its address: {proc.stderr.read() if proc.poll() is not None else ''}"
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert url.split("token=")[1] not in ps, "the server's token is readable in the process list"
    again = subprocess.run([str(BIN / "cllm"), "panel"], env=env, capture_output=True, text=True, timeout=60)
    assert (
        again.returncode == 0 and f"already runs for this workspace: {url}" in again.stdout
    ), again  # one server a home
    assert oct((home / "panel-server.json").stat().st_mode)[-3:] == "600"
    assert (
        '"fetchNews": "false"'
        in next((home / ".jupyterlab-settings").rglob("notification.jupyterlab-settings")).read_text()
    )
    kernels = next((home / ".jupyterlab-settings").rglob("kernels-settings.jupyterlab-settings"))
    assert json.loads(kernels.read_text()) == {"commsOverSubshells": "disabled"}  # a page reload keeps the panel live
    yield home, url
    proc.terminate()  # cllm panel stops its server (and the server its kernels) on SIGTERM
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
    time.sleep(2)
    left = subprocess.run(["pgrep", "-f", str(home.parent)], capture_output=True, text=True).stdout.split()
    for pid in left:  # never leak a server, even when the check below fails
        subprocess.run(["kill", "-9", pid])
    assert not left, f"cllm panel left {len(left)} process(es) running after SIGTERM"


def test_panel_in_a_real_browser(lab, tmp_path):
    """The panel as a user drives it in JupyterLab (about 40 s: a real JupyterLab and Chromium, a run trained, the
    page reloaded during it and the kernel restarted; each wait is for an event on the page)."""
    from playwright.sync_api import sync_playwright
    home, url = lab
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "".join(f"Line {i}: a clock has twelve hours, and each hour has sixty minutes.\n" for i in range(300))
    )
    art = ROOT / "test-artifacts"
    art.mkdir(exist_ok=True)
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "chrome"),
            executable_path=CHROMIUM,
            headless=True,
            viewport=dict(width=1400, height=1100),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        try:
            page.goto(url.replace("?token", "?reset&token"), timeout=60_000)
            idle = """() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                return w && w.context && w.context.path === 'panel.ipynb' && w.sessionContext
                       && w.sessionContext.session && w.sessionContext.session.kernel
                       && w.sessionContext.session.kernel.status === 'idle'; }"""
            page.wait_for_function(idle, timeout=90_000)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_selector(".widget-tab", timeout=90_000)

            def field(label, kind="input"):
                return page.locator(f".jupyter-widgets:visible:has(> label:text-is('{label}')) {kind}").first

            # Models tab: two tiny models, the second left without data
            page.locator(".lm-TabBar-tab:has-text('Models')").first.click()
            for name in ("browser", "empty"):
                field("Name").fill(name)
                field("Name").press("Enter")
                field("Preset", "select").select_option("nano")
                page.wait_for_selector("text=/nano: 2 layers, width 64/", timeout=30_000)  # the size before Create
                if name == "empty":  # a field that differs from the preset's is marked, the size follows it
                    field("Layers").fill("3")
                    field("Layers").press("Enter")
                    page.wait_for_selector("text=/1 field changed: 3 layers/", timeout=30_000)
                    assert page.locator(".cllm-changed:visible").count() == 1
                    page.screenshot(path=str(art / "panel-models-form.png"), full_page=True)
                page.locator("button:has-text('Create model')").click()
                page.wait_for_selector(f"text=created {name}", timeout=60_000)
                page.wait_for_function("() => !document.body.innerText.includes('field changed')", timeout=30_000)
                assert field("Name").input_value() == ""  # the form is cleared for the next model

            # a refused start: the message names the model and the way out, and nothing stays "starting"
            page.locator(".lm-TabBar-tab:has-text('Train')").first.click()
            field("Model", "select").select_option("empty")
            page.locator("button[title='Train']").click()
            page.wait_for_selector("text=/queue of 'empty' is empty/", timeout=60_000)
            assert "starting" not in page.locator(".widget-tab").first.inner_text()
            # switching models mid-message clears what belonged to the other model
            field("Model", "select").select_option("browser")
            gone = "() => !document.body.innerText.includes(\"queue of 'empty' is empty\")"
            page.wait_for_function(gone, timeout=30_000)

            # Data tab: upload the corpus through the file widget
            page.locator(".lm-TabBar-tab:has-text('Data')").first.click()
            with page.expect_file_chooser() as chooser:
                page.locator("button:has-text('Upload files')").click()
            chooser.value.set_files(str(corpus))
            page.wait_for_selector("text=added 1 source", timeout=60_000)

            # Train tab: Train, and the settings that cannot change mid-run are locked with a note
            page.locator(".lm-TabBar-tab:has-text('Train')").first.click()
            field("Target epochs").fill("200")  # long enough to outlast the checks below; Stop ends it
            field("Target epochs").press("Enter")
            page.locator("button[title='Train']").click()
            points = """() => { const c = document.querySelector('.cllm-plot-caption');
                const m = c && c.textContent.match(/plot: (\\d+) training points/); return m && +m[1] >= N; }"""
            page.wait_for_function(points.replace("N", "2"), timeout=180_000)
            page.wait_for_selector("text=/step \\d+ · loss/", timeout=60_000)
            assert page.locator("text=the settings are fixed while this run trains").count() == 1
            assert field("Target epochs").is_disabled()

            # the plot is drawn in the browser: a smoothed curve, values under the pointer, drag to zoom
            page.wait_for_function("""() => { const p = document.querySelector('.cllm-lossplot path.series-smooth');
                return p && (p.getAttribute('d').match(/L/g) || []).length >= 1; }""", timeout=60_000)
            box = page.locator(".cllm-lossplot:visible svg").bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5)
            tip = page.locator(".cllm-lossplot:visible .cllm-lossplot-tip")
            tip.wait_for(state="visible", timeout=10_000)
            assert re.search(r"step \d+ · epoch [0-9.]+", tip.inner_text()) and "loss" in tip.inner_text()
            page.screenshot(path=str(art / "panel-training.png"), full_page=True)
            page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.5, steps=5)
            page.mouse.up()
            page.wait_for_selector(".cllm-lossplot text.hint:has-text('zoomed')", timeout=10_000)
            page.mouse.dblclick(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
            page.wait_for_selector(".cllm-lossplot text.hint:has-text('drag across to zoom')", timeout=10_000)
            # the plot goes on while another cell keeps the kernel busy
            n = int(re.search(r"plot: (\d+) training", page.locator(".cllm-plot-caption").inner_text())[1])
            page.evaluate("""() => { const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
                k.requestExecute({code: 'import time; time.sleep(8)'}); }""")
            page.wait_for_function("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
                                   " === 'busy'", timeout=5_000)
            page.wait_for_function(points.replace("N", str(n + 3)), timeout=7_000)
            page.wait_for_function("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
                                   " === 'busy'", timeout=1_000)
            # a page reload during the run (the notebook saved, as JupyterLab does every two minutes): the panel comes
            # back live, and other models can be browsed meanwhile
            page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
            page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=30_000)
            page.reload()
            page.wait_for_function(idle, timeout=90_000)
            page.wait_for_selector(".widget-tab", timeout=90_000)
            page.locator(".lm-TabBar-tab:has-text('Train')").first.click()
            n = int(re.search(r"plot: (\d+) training", page.locator(".cllm-plot-caption").inner_text())[1])
            page.wait_for_function(points.replace("N", str(n + 2)), timeout=60_000)  # it follows the run again
            field("Model", "select").select_option("empty")
            page.wait_for_selector("text=/follows the run of browser/", timeout=30_000)
            field("Model", "select").select_option(label="browser  ● training")
            page.wait_for_function("() => !document.body.innerText.includes('follows the run of')", timeout=30_000)
            page.locator("button[title='Stop']").click()
            page.wait_for_selector("text=/stopped: \\d+ steps, [0-9,]+ tokens/", timeout=60_000)
            assert not field("Target epochs").is_disabled()
            # one source for the numbers: the header and the status say the final state alike
            page.wait_for_selector("text=/of 200 epochs in/", timeout=30_000)
            body = page.locator(".widget-tab").first.inner_text() + page.locator("body").inner_text()
            head = re.search(r"epoch ([0-9.]+)/200 · step (\d+),", body)
            status = re.search(r"([0-9.]+) of 200 epochs in ([0-9,]+) steps", body)
            assert head and status and head[1] == status[1] and head[2] == status[2].replace(",", ""), (head, status)
            page.screenshot(path=str(art / "panel-stopped.png"), full_page=True)

            # a kernel restart during a run: the panel says it lost its kernel; the cell run again says where the
            # run stopped
            page.locator("button[title='Train']").click()
            page.wait_for_selector("text=/step \\d+ · loss/", timeout=60_000)
            page.evaluate("() => { window.jupyterapp.commands.execute('kernelmenu:restart'); }")
            page.locator(".jp-Dialog button.jp-mod-accept").first.click()
            page.wait_for_selector(".cllm-link-lost:visible", timeout=30_000)
            page.screenshot(path=str(art / "panel-kernel-restarted.png"), full_page=True)
            page.wait_for_function(idle, timeout=90_000)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_selector("text=/last run ended without finishing/", timeout=90_000)
            assert page.locator(".cllm-link-lost:visible").count() == 0

            # growth: one more layer, trained, marked on the plot, and the hint follows
            field("Layers", ".noUi-handle").focus()
            page.keyboard.press("ArrowRight")
            page.wait_for_selector("text=1 new layer", timeout=10_000)
            page.locator("button[title='Train']").click()
            page.wait_for_selector(".cllm-lossplot text.mark-label:has-text('grew to 3 layers')", timeout=120_000)
            page.wait_for_selector("text=this model has 3 layers", timeout=60_000)
            page.locator("button[title='Stop']").click()
            page.wait_for_selector("text=/stopped: \\d+ steps, [0-9,]+ tokens/", timeout=60_000)
            page.set_viewport_size(dict(width=1100, height=800))  # a laptop with the file browser open
            page.wait_for_timeout(500)
            page.screenshot(path=str(art / "panel-1100x800.png"), full_page=True)
            page.locator(".cllm-lossplot:visible").scroll_into_view_if_needed()
            page.screenshot(path=str(art / "panel-1100x800-plot.png"), full_page=True)
            page.locator(".lm-TabBar-tab:has-text('Data')").first.click()
            page.wait_for_timeout(300)
            page.screenshot(path=str(art / "panel-1100x800-data.png"), full_page=True)

            # History: the runs compared in the browser chart, in bits per byte, with the runs table beside
            page.locator(".lm-TabBar-tab:has-text('History')").first.click()
            field("Models", "select").select_option(["browser"])
            page.locator("button:has-text('Compare')").click()
            page.wait_for_selector(".cllm-runs", timeout=30_000)
            assert "history browser --plot loss.png --x tokens --unit bits" in page.locator("body").inner_text()
            chart = ".cllm-lossplot:visible"
            page.wait_for_selector(f"{chart} text:has-text('loss (bits/byte)')", timeout=30_000)
            assert page.locator(f"{chart} path.series-compare").count() == 1
            assert page.locator(f"{chart} path.val-point").count() >= 1  # the run's validation, in its colour
            assert page.locator(f"{chart} text.mark-label:has-text('grew to 3 layers')").count() == 1
            page.locator(f"{chart} svg").scroll_into_view_if_needed()
            box = page.locator(f"{chart} svg").bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
            page.wait_for_selector("text=/browser: loss [0-9.]+ \\(smoothed/", timeout=10_000)  # every run at that x
            page.screenshot(path=str(art / "panel-1100x800-history.png"), full_page=True)
            # the dark theme: the same panel, readable
            page.evaluate("window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
            page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=30_000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(art / "panel-1100x800-history-dark.png"), full_page=True)
            page.locator(".lm-TabBar-tab:has-text('Train')").first.click()
            page.wait_for_timeout(300)
            page.screenshot(path=str(art / "panel-1100x800-train-dark.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(art / "panel-failure.png"), full_page=True)
            raise
        finally:
            ctx.close()
    state = json.loads((home / "models" / "browser" / "state.json").read_text())
    assert state["steps"] >= 2 and state["epochs_trained"] > 0
    assert json.loads((home / "models" / "browser" / "config.json").read_text())["n_layer"] == 3
    steps = (home / "models" / "browser" / "history" / "steps.csv").read_text().strip().splitlines()[1:]
    assert len(steps) == state["steps"]
