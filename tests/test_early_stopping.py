"""Early stopping waits while the learning curve still falls: on the solar cells a 6-epoch cosine plan had
stopped after its 4th epoch, the validation loss falling (0.608 -> 0.533 -> 0.500) but above the probe's, and
before the schedule's last, lowest-rate epochs."""

from __future__ import annotations

from types import SimpleNamespace

from desktop_tl.core.training.loop import _ending
from desktop_tl.core.training.plan import FineTuneStage, Plan, ProbeStage


def _session(val_losses: list[float], bad_epochs: int):
    stage = FineTuneStage(6, "all", 5e-4, 0.7, 0.05, 1.5, 0.0, "auto", patience=4)
    plan = Plan("auto", 160, 1.0, 32, False, False, (ProbeStage(("identity",), ("fixed",)), stage))
    history = [{"epoch": 1, "stage": "probe", "val_loss": 0.476}] + [
        {"epoch": e, "stage": "finetune", "val_loss": v} for e, v in enumerate(val_losses, start=2)]
    return SimpleNamespace(plan=plan, state={"bad_epochs": bad_epochs, "history": history, "seconds": 100.0,
                                             "transfer_check": {}}), stage


def test_early_stopping_waits_while_the_validation_loss_still_falls():
    s, stage = _session([0.508, 0.608, 0.533, 0.500], bad_epochs=4)
    assert _ending(s, stage, 5, 50.0) is None
    s, stage = _session([0.508, 0.608, 0.533, 0.541], bad_epochs=4)
    reason, words = _ending(s, stage, 5, 50.0)
    assert reason == "early stopping" and "no longer falls" in words
    s, stage = _session([0.508, 0.608, 0.533], bad_epochs=3)      # within the patience: goes on either way
    assert _ending(s, stage, 4, 50.0) is None
