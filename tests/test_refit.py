"""The refit on train+val (core.training.refit): when it runs, what it repeats, and what the log says when the
budget does not hold it. The refit itself, end to end, is tested with the ensemble it retrains
(test_ensemble)."""

from __future__ import annotations

from types import SimpleNamespace

from desktop_tl.core.config import BUDGET_PRESETS
from desktop_tl.core.training.plan import DataSummary, ModelFacts, Throughput
from desktop_tl.core.training.planner import plan_auto
from desktop_tl.core.training.refit import finetune_epochs_found, refit_due, refit_plan, refit_seconds

LAPTOP = Throughput("cpu", forward=((96, 320.0), (224, 60.0)), train=((96, 95.0), (224, 16.0)))
SMALL = DataSummary(train_counts=(20,) * 10, val_images=50, test_images=50, median_side=32, grayscale=True)


def _session(seconds_so_far: float, best_epoch: int = 4, **state):
    """What refit_due reads of a run that fine-tuned 6 epochs after its probe (10 s each), best at `best_epoch`."""
    plan = plan_auto(SMALL, ModelFacts("efficientnet_lite0", 224, True), LAPTOP, BUDGET_PRESETS["balanced"])
    history = [{"epoch": 1, "stage": "probe", "seconds": 20.0}] + [
        {"epoch": e, "stage": "finetune", "seconds": 10.0} for e in range(2, 8)]
    return SimpleNamespace(plan=plan, main=True, world=1, batch_size=16, train_samples=[None] * 200,
                           val_set=[None] * 50,
                           state={"cross_validation": {"folds": 5, "trained_on_all": None}, "refit": None,
                                  "probe": {"view_set": "mirror", "l2": 0.01}, "history": history,
                                  "best_epoch": best_epoch, "seconds": seconds_so_far, "ensemble": None, **state})


def test_the_refit_repeats_the_probe_and_the_epochs_up_to_the_best_on_train_and_val():
    s = _session(60.0)
    assert finetune_epochs_found(s) == 3                         # epochs 2, 3 and 4 of fine-tuning
    assert refit_seconds(s) == (20.0 + 3 * 10.0) * 250 / 200     # on 250 images instead of 200
    plan = refit_plan(s)
    probe, finetune = plan.stages
    assert probe.view_sets == ("mirror",) and probe.l2_grid == (0.01,) and probe.views == ("identity", "hflip")
    assert finetune.epochs == 3 and finetune.patience == 0 and plan.cross_validation == 0
    assert plan.stage("baseline") is None and plan.budget_seconds is None
    assert refit_due(s) == (True, "")


def test_without_the_time_for_it_the_log_says_so_and_runs_that_need_none_say_nothing():
    due, words = refit_due(_session(BUDGET_PRESETS["balanced"] - 30.0))
    assert not due and words.startswith("Not trained again on the training and validation images together: that "
                                        "takes about 62 s and 28 s of the time budget is left")
    assert refit_due(_session(60.0, cross_validation=None)) == (False, "")                # a large dataset
    assert refit_due(_session(60.0, cross_validation={"trained_on_all": "scratch"})) == (False, "")
    assert refit_due(_session(60.0, refit={"images": 250})) == (False, "")                # done before a resume
    assert refit_due(_session(60.0, best_epoch=1)) == (True, "")     # the probe stayed best: the probe alone again
    assert len(refit_plan(_session(60.0, best_epoch=1)).stages) == 1


def test_a_run_stopped_during_its_refit_resumes_the_refit_and_finishes(tmp_path):
    from desktop_tl.core.config import SplitConfig, TrainConfig
    from desktop_tl.core.events import BatchProgress, Finished
    from desktop_tl.core.runs.folder import create_run, open_run
    from desktop_tl.core.training.run import RunControl, train_run

    from helpers import copy_demo_subset

    data = copy_demo_subset(tmp_path / "images", 12, ("grass", "gravel"))
    run = tmp_path / "run"
    create_run(run, data, TrainConfig(budget=60.0, num_workers=0), SplitConfig(0.25, 0.25, seed=0))
    control, events = RunControl(), []
    for event in train_run(run, control):
        events.append(event)
        if isinstance(event, BatchProgress) and event.phase == "refit" and event.epoch == 2:
            control.stop()                                         # Stop in the refit's second epoch
    assert isinstance(events[-1], Finished) and events[-1].stopped_by_user, events[-1]
    assert open_run(run).status == "interrupted" and (run / "refit" / "last.safetensors").is_file()
    resumed = list(train_run(run))                                 # Resume: the refit goes on from its epoch
    refit_epochs = [e.epoch for e in resumed if isinstance(e, BatchProgress) and e.phase == "refit"]
    assert refit_epochs and min(refit_epochs) >= 2
    assert isinstance(resumed[-1], Finished) and resumed[-1].completed, resumed[-1]
    assert resumed[-1].metrics["cross_validation"]["refit"]["images"] == 18
