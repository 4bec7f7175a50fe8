"""EngineController signal order: free first, then the outcome, so an outcome's slot can submit the next job."""

from __future__ import annotations

from desktop_tl.core.errors import UserError
from desktop_tl.core.events import Failed
from desktop_tl.gui.widgets.panel_support import JobClient


def _refuse(_ctx) -> None:
    raise UserError("No images found.", "Pick another folder.")


def test_order_is_busy_false_then_the_outcome(qtbot, controller):
    seen: list[tuple] = []
    controller.sig_busy_changed.connect(lambda busy: seen.append(("busy", busy, controller.busy)))
    controller.sig_result.connect(lambda kind, result: seen.append(("result", kind, result, controller.busy)))
    controller.sig_failed.connect(lambda kind, failed: seen.append(("failed", kind, failed.what, controller.busy)))

    with qtbot.waitSignal(controller.sig_result, timeout=10_000):
        assert controller.submit("probe", lambda ctx: 42)
    with qtbot.waitSignal(controller.sig_failed, timeout=10_000):
        assert controller.submit("import", _refuse)

    assert seen == [("busy", True, True), ("busy", False, False), ("result", "probe", 42, False),
                    ("busy", True, True), ("busy", False, False), ("failed", "import", "No images found.", False)]


def test_a_result_slot_can_submit_the_next_job(qtbot, controller):
    accepted: list[bool] = []

    def follow_up(kind: str, _result: object) -> None:
        if kind == "first":
            accepted.append(controller.submit("second", lambda ctx: "done"))

    controller.sig_result.connect(follow_up)
    with qtbot.waitSignal(controller.sig_result, timeout=10_000,
                          check_params_cb=lambda kind, _result: kind == "second") as second:
        assert controller.submit("first", lambda ctx: 1)
    assert accepted == [True]
    assert second.args == ["second", "done"]
    assert not controller.busy


def test_a_failure_slot_can_submit_the_next_job(qtbot, controller):
    accepted: list[bool] = []

    def retry(kind: str, failed: Failed) -> None:
        assert failed.what == "No images found."
        accepted.append(controller.submit("retry", lambda ctx: "recovered"))

    controller.sig_failed.connect(retry)
    with qtbot.waitSignal(controller.sig_result, timeout=10_000) as retried:
        assert controller.submit("import", _refuse)
    assert accepted == [True]
    assert retried.args == ["retry", "recovered"]


def test_job_client_relays_at_once_and_a_handler_can_chain_jobs(qtbot, controller):
    client = JobClient(controller)
    running: list[bool] = []
    client.sig_running.connect(running.append)
    chained: list[bool] = []
    client.sig_failed.connect(lambda kind, _failed: chained.append(client.submit("preview", lambda ctx: "views")))

    with qtbot.waitSignal(client.sig_result, timeout=10_000) as result:
        assert client.submit("import", _refuse)
    assert chained == [True]
    assert result.args == ["preview", "views"]
    assert running == [True, False, True, False]
    assert not client.running and not controller.busy
