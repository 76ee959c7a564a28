"""The dashboard's key prompt in headless Chromium (Debian's ``chromium``, driven by Playwright) against a real
``mlpilot up`` with auth on (``auth.mode=on``, listening on 127.0.0.1): /ui/ loads, the API answers 401 and the key
prompt appears; a wrong key is refused with a visible message; a read key shows the overview; setting traffic
(deploy scope) with it is refused with a visible 403 message; an admin key sets it. Screenshots in
``test-artifacts/dashboard/auth-*.png``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mlpilot import Client
from tests.e2e.test_dashboard import CHROMIUM, SHOTS, require_browser
from tests.factories import iris_frame
from tests.helpers import ServerProcess
from tests.integration.auth.provider import server_with_keys

pytestmark = pytest.mark.slow

KEY_ITEM = "mlpilot-api-key"


@dataclass
class Browser:
    server: ServerProcess
    page: Any
    keys: dict[str, str]
    answers: list[str | None] = field(default_factory=list)  # what the next prompts get (None: dismissed)
    prompts: list[str] = field(default_factory=list)  # every prompt's message, in order
    errors: list[str] = field(default_factory=list)  # JavaScript errors

    def on_dialog(self, dialog: Any) -> None:
        self.prompts.append(dialog.message)
        answer = self.answers.pop(0) if self.answers else None
        if answer is None:
            dialog.dismiss()
        else:
            dialog.accept(answer)

    def open(self, hash_: str, *answers: str | None) -> Any:
        self.answers = list(answers)
        self.prompts.clear()
        self.page.goto("about:blank")
        self.page.goto(f"{self.server.url}/ui/{hash_}")
        return self.page

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"auth-{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    require_browser()
    from playwright.sync_api import sync_playwright
    from sklearn.linear_model import LogisticRegression

    home: Path = tmp_path_factory.mktemp("dashboard-auth") / "home"
    server, keys = server_with_keys(home, {"admin": ["admin"], "viewer": ["read"]}, {"MLPILOT_SERVER__GRPC": "0"})
    pw = sync_playwright().start()
    chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    try:
        X, y = iris_frame()
        with Client(server.url, api_key=keys["admin"]) as c:
            c.register_model("iris", LogisticRegression(max_iter=300).fit(X, y), sample=X.head(3))
            c.register_model("iris", LogisticRegression(C=0.5, max_iter=300).fit(X, y), sample=X.head(3))
            c.deploy("iris", "iris:1", variant="a")
            c.deploy("iris", "iris:2", variant="b")
        page = chromium.new_page(viewport={"width": 1280, "height": 800})
        b = Browser(server, page, keys)
        page.on("dialog", b.on_dialog)
        page.on("pageerror", lambda e: b.errors.append(str(e)))
        yield b
    finally:
        chromium.close()
        pw.stop()
        server.stop()


def _set_traffic(page: Any, a: int, b: int) -> None:
    page.wait_for_selector("#dep-name")
    page.get_by_label("a (%)").fill(str(a))
    page.get_by_label("b (%)").fill(str(b))
    page.get_by_role("button", name="Set traffic").click()


def test_a_wrong_key_is_refused_with_a_visible_message(browser: Browser) -> None:
    page = browser.open("#/", "mlp_00000000_not-a-real-key")  # then the next prompt is dismissed
    page.wait_for_selector("#live.bad", timeout=15_000)
    assert browser.prompts[0].startswith("This server needs an API key.")
    assert any(p.startswith("That API key was refused.") for p in browser.prompts[1:]), browser.prompts
    assert "unknown API key" in page.inner_text("#live")  # visible: the server's own message
    assert page.evaluate(f"localStorage.getItem('{KEY_ITEM}')") == "mlp_00000000_not-a-real-key"
    browser.shot("wrong-key")
    assert not browser.errors


def test_a_read_key_sees_the_overview_but_cannot_change_traffic(browser: Browser) -> None:
    page = browser.open("#/", browser.keys["viewer"])  # the stored wrong key is refused first: the prompt says so
    page.wait_for_selector("#live.ok", timeout=15_000)
    card = page.wait_for_selector("[data-deployment=iris]")
    assert "iris" in card.inner_text()
    assert browser.prompts and browser.prompts[0].startswith("That API key was refused.")
    browser.shot("read-overview")

    page = browser.open("#/deployments/iris")
    _set_traffic(page, 50, 50)
    page.wait_for_selector(".flash.error")
    message = page.inner_text(".flash.error")
    assert "the API key 'viewer' lacks the 'deploy' scope" in message, message
    assert not browser.prompts  # a 403 asks for no other key: this one is known, just not allowed
    browser.shot("read-403")
    with Client(browser.server.url, api_key=browser.keys["admin"]) as c:
        assert c.get_deployment("iris").spec.traffic == {"a": 100, "b": 0}
    assert not browser.errors


def test_an_admin_key_can_act(browser: Browser) -> None:
    browser.page.evaluate(f"localStorage.removeItem('{KEY_ITEM}')")
    page = browser.open("#/deployments/iris", browser.keys["admin"])
    page.wait_for_selector("#live.ok", timeout=15_000)
    assert browser.prompts[0].startswith("This server needs an API key.")
    _set_traffic(page, 30, 70)
    page.wait_for_selector(".flash.ok")
    assert "traffic of iris" in page.inner_text(".flash.ok")
    browser.shot("admin-acted")
    with Client(browser.server.url, api_key=browser.keys["admin"]) as c:
        assert c.get_deployment("iris").spec.traffic == {"a": 30, "b": 70}
        last = c.events(subject="deployment:iris")[-1]
    assert last.actor == "dashboard", last  # an admin key may name the actor (the dashboard does: x-mlpilot-actor)
    assert not browser.errors
