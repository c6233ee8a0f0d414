"""Open notebook 06 in JupyterLab in headless Chromium, run it with the widgets on, screenshot.

Checks that the explorer widgets (dropdowns, sliders, output panes, the ipycanvas drawing canvas)
really render in a browser, which neither papermill nor nbval can see. Steps:

1. copy ``notebooks/06_explainability.ipynb`` into a temporary folder (``INTERACTIVE = True``);
2. start ``jupyter lab`` on localhost (no browser, no token, temporary config/runtime/settings);
3. drive Debian's ``/usr/bin/chromium`` with Playwright (``pip install playwright``; the
   browser download ``playwright install`` is NOT used), run all cells, wait for the widgets,
   draw a stroke on the canvas and press Search;
4. write ``figures/jupyterlab_06.png`` (and print a small JSON report).

Run (one long job at a time): ``flock /tmp/xmodal_cpu.lock .venv/bin/python benchmarks/screenshot_jupyterlab.py``
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_notebook(dst_dir: Path, profile: str | None = None, data_root: str | None = None) -> Path:
    """Copy notebook 06 with ``INTERACTIVE = True`` and ``DEVICE = "cpu"`` in its parameters cell.

    ``profile`` (and ``data_root``) first set the parameters ``xmodal reproduce --profile`` would
    inject (so a ``cpu`` run reuses the models that run saved under ``XMODAL_ARTIFACTS``)."""
    import nbformat

    src = ROOT / "notebooks" / "06_explainability.ipynb"
    injected: dict = {}
    if profile is not None:
        from xmodal_lib.run.plan import plan_run

        injected = dict(plan_run([src], profile, ROOT / "notebooks", data_root=data_root)[0].injected)
    injected.update(INTERACTIVE=True, DEVICE="cpu")
    nb = nbformat.read(src, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    lines = []
    for line in cell.source.splitlines():
        key = line.split("=", 1)[0].strip()
        lines.append(f"{key} = {injected[key]!r}" if "=" in line and key in injected else line)
    cell.source = "\n".join(lines)
    out = dst_dir / "06_explainability_interactive.ipynb"
    nbformat.write(nb, out)
    return out


def start_lab(root_dir: Path, tmp: Path, port: int, env: dict) -> subprocess.Popen:
    cmd = [str(ROOT / ".venv" / "bin" / "jupyter"), "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--ServerApp.root_dir={root_dir}", "--IdentityProvider.token=", "--ServerApp.password=",
           "--ServerApp.disable_check_xsrf=True", "--expose-app-in-browser", "--LabApp.news_url=",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers often run as root
    log = open(tmp / "lab.log", "w")
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with code {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1.0)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def drive(url: str, out_png: Path, timeout_s: float) -> dict:
    """Open the notebook, run all cells, wait for widgets, draw on the canvas, screenshot."""
    from playwright.sync_api import sync_playwright

    report: dict = {}
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        browser = pw.chromium.launch_persistent_context(
            profile, executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1600, "height": 1400})
        page = browser.pages[0] if browser.pages else browser.new_page()
        page.goto(url, wait_until="domcontentloaded", timeout=120_000)
        page.wait_for_selector(".jp-Notebook", timeout=120_000)
        page.wait_for_function("() => window.jupyterapp !== undefined", timeout=120_000)
        # wait for the kernel, then run everything
        page.wait_for_function(
            "() => { const w = window.jupyterapp.shell.currentWidget;"
            " return w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel"
            " && w.sessionContext.session.kernel.status === 'idle'; }", timeout=120_000)
        t0 = time.time()
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_selector(".jp-OutputArea .xmodal-explorer .widget-dropdown", timeout=int(timeout_s * 1000))
        page.wait_for_selector(".jp-OutputArea canvas", timeout=120_000)
        page.wait_for_function(  # all cells done (no '[*]' prompts left)
            "() => !Array.from(document.querySelectorAll('.jp-InputPrompt')).some(e => e.textContent.includes('*'))",
            timeout=int(timeout_s * 1000))
        report["run_all_s"] = round(time.time() - t0, 1)
        widget = page.locator(".jp-OutputArea .xmodal-explorer").last
        widget.scroll_into_view_if_needed()
        time.sleep(2.0)
        # draw a stroke on the ipycanvas canvas (top layer receives the mouse) and press Search
        canvas = page.locator(".jp-OutputArea canvas").last
        box = canvas.bounding_box()
        if box:
            x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
            corners = [(0.25, 0.8), (0.5, 0.2), (0.75, 0.8), (0.25, 0.8)]  # a triangle, one stroke
            page.mouse.move(x0 + corners[0][0] * w, y0 + corners[0][1] * h)
            page.mouse.down()
            for (ax, ay), (bx, by) in zip(corners, corners[1:]):
                for t in range(1, 11):
                    page.mouse.move(x0 + (ax + (bx - ax) * t / 10) * w, y0 + (ay + (by - ay) * t / 10) * h)
            page.mouse.up()
            page.get_by_role("button", name="Search").last.click()
            try:
                page.wait_for_function(
                    "() => Array.from(document.querySelectorAll('.jp-OutputArea .widget-label'))"
                    ".some(e => e.textContent.startsWith('searched with'))", timeout=120_000)
                report["drawn_search"] = "ok"
            except Exception as e:  # noqa: BLE001 - report, still take the screenshot
                report["drawn_search"] = f"no confirmation: {type(e).__name__}"
            time.sleep(3.0)
        widget.evaluate("e => e.scrollIntoView({block: 'start'})")  # the whole explorer from its top
        page.wait_for_function(  # every figure image of the explorer decoded
            "() => { const im = Array.from(document.querySelectorAll('.xmodal-explorer img'));"
            " return im.length >= 2 && im.every(i => i.complete && i.naturalWidth > 0); }", timeout=60_000)
        for size in ({"width": 1601, "height": 1401}, {"width": 1600, "height": 1400}):
            page.set_viewport_size(size)  # a resize forces a full repaint (software raster leaves tiles white)
            time.sleep(2.0)
        widget.evaluate("e => e.scrollIntoView({block: 'start'})")
        time.sleep(2.0)
        report["n_dropdowns"] = page.locator(".jp-OutputArea .widget-dropdown").count()
        report["n_sliders"] = page.locator(".jp-OutputArea .widget-slider").count()
        report["n_canvases"] = page.locator(".jp-OutputArea canvas").count()
        report["n_output_images"] = page.locator(".jp-OutputArea .widget-output img").count()
        report["explorer_images"] = page.evaluate(
            "() => Array.from(document.querySelectorAll('.xmodal-explorer img')).map(i => {"
            " const r = i.getBoundingClientRect(); return [Math.round(r.x), Math.round(r.y), Math.round(r.width),"
            " Math.round(r.height), i.naturalWidth, i.naturalHeight]; })")
        out_png.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out_png), full_page=False)
        browser.close()
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="PNG path (default figures/jupyterlab_06.png)")
    ap.add_argument("--timeout", type=float, default=540.0, help="seconds to wait for the notebook to run")
    ap.add_argument("--profile", default=None,
                    help="parameters of notebooks/params/<profile>/06_explainability.yaml (default: the notebook's own)")
    ap.add_argument("--data-root", default=None, help="DATA_ROOT as `xmodal reproduce --data-root` passes it")
    args = ap.parse_args()
    from xmodal_lib.infra.paths import figures_dir

    out_png = Path(args.out) if args.out else figures_dir() / "jupyterlab_06.png"
    if not Path("/usr/bin/chromium").exists():
        print("chromium not found at /usr/bin/chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="xmodal_lab_"))
    env = dict(os.environ)
    env.update(JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(tmp / "ws"),
               XMODAL_FIGURES=str(tmp / "figures"), OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "2"),
               XMODAL_ROOT=str(ROOT))
    quiet = tmp / "settings" / "@jupyterlab" / "apputils-extension"
    quiet.mkdir(parents=True)
    (quiet / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                         "checkForUpdates": False}))
    nbset = tmp / "settings" / "@jupyterlab" / "notebook-extension"
    nbset.mkdir(parents=True)  # render every cell (no virtual windowing: off-screen cells paint late)
    (nbset / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    nb_dir = tmp / "nb"
    nb_dir.mkdir()
    nb = prepare_notebook(nb_dir, args.profile, args.data_root)
    port = free_port()
    proc = start_lab(nb_dir, tmp, port, env)
    t0 = time.time()
    try:
        wait_http(f"http://127.0.0.1:{port}/api/status", proc)
        report = drive(f"http://127.0.0.1:{port}/lab/tree/{nb.name}", out_png, args.timeout)
        report.update(screenshot=str(out_png), total_s=round(time.time() - t0, 1), ok=True)
    except Exception as e:  # noqa: BLE001
        report = {"ok": False, "error": f"{type(e).__name__}: {e}",
                  "lab_log_tail": (tmp / "lab.log").read_text()[-3000:]}
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(report, indent=2))
    return 0 if report.get("ok") else 1


if __name__ == "__main__":
    raise SystemExit(main())
