"""A real headless Chromium (Debian's, driven by Playwright) logs in to a real hub, picks the
project, opens a notebook in JupyterLab, runs it, and saves a screenshot under test-artifacts/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hub_helpers import PASSWORD, REPO, Researcher

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
TEMPLATE = "01_getting_started.ipynb"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_browser_logs_in_opens_and_runs_a_notebook(hub, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), "install Debian chromium (make browser-deps)"
    main = hub.projects["main"]
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 900},
        )
        page = context.new_page()
        page.goto(f"{hub.url}/hub/login")
        page.fill("#username_input", "chen.wei")
        page.fill("#password_input", PASSWORD)
        page.click("#login_submit")
        # Several active projects: the spawn form asks which one.
        page.wait_for_selector("select#project", timeout=30_000)
        page.select_option("select#project", main)
        page.click("input[type=submit], button[type=submit]")
        page.wait_for_url("**/user/chen.wei/lab**", timeout=90_000)

        # A template notebook copied into the new workspace: run it all in the browser.
        api = Researcher(hub, "chen.wei")
        listing = api.api("GET", "contents").json()
        templates = sorted(c["path"] for c in listing.get("content", []) if c["path"].endswith(".ipynb"))
        assert TEMPLATE in templates, templates
        page.goto(f"{hub.url}/user/chen.wei/lab/tree/{TEMPLATE}")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        # Wait for the kernel before running (a request sent while it connects is dropped).
        page.wait_for_selector("#jp-main-statusbar :text('| Idle')", timeout=60_000)
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        try:
            page.wait_for_selector(".jp-OutputArea-output :text('Data dictionary')", timeout=90_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-InputPrompt')].every(p => !p.textContent.includes('*'))",
                timeout=90_000,
            )
        except Exception:
            page.screenshot(path=str(artifacts / "hub-browser-failure.png"), full_page=True)
            raise
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count()
        assert errors == 0
        shot = artifacts / "hub-browser-template.png"
        page.screenshot(path=str(shot), full_page=True)
        context.close()
    assert shot.stat().st_size > 10_000
    api.stop()
