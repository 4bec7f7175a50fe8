"""A training session of its own inside a run folder: the refit on train+val (core.training.refit) and each
further fine-tuned network an average gets (core.training.members) train this way.

The session lives in a subfolder of the run (its own run.json-free checkpoints there), so a run stopped during
it resumes it from its last epoch. Its epochs are reported as messages and its batches as progress of its own
phase: the run's curves and epoch count stay those of the run itself.
"""

from __future__ import annotations

from dataclasses import replace

from desktop_tl.core.config import TrainConfig
from desktop_tl.core.data.index import DatasetIndex
from desktop_tl.core.events import BatchProgress, EpochEnd, Message
from desktop_tl.core.models.factory import create_model
from desktop_tl.core.training.plan import VIEW_SETS, Plan
from desktop_tl.core.training.session import TrainingSession


def chosen_settings_plan(s: TrainingSession, finetune_epochs: int, patience: int) -> Plan:
    """The run's plan with its choices made: the probe with the views and penalty chosen, then (for
    `finetune_epochs` > 0) the fine-tuning stage for that many epochs with this early-stopping patience; no
    from-scratch check, no budget, nothing left to choose."""
    chosen = s.state["probe"]
    stages = [replace(s.plan.stage("probe"), views=VIEW_SETS[chosen["view_set"]], view_sets=(chosen["view_set"],),
                      l2_grid=(chosen["l2"],))]
    if finetune_epochs:
        stages.append(replace(s.plan.stage("finetune"), epochs=finetune_epochs, patience=patience))
    return replace(s.plan, stages=tuple(stages), batch_size=s.batch_size, budget_seconds=None,
                   estimated_seconds={}, reasons=(), cross_validation=0)


def train_side_session(s: TrainingSession, folder_name: str, index: DatasetIndex, plan: Plan, config: TrainConfig,
                       phase: str, label: str, train_epochs):
    """Train `plan` from the pretrained weights on `index` with `config`, in the run folder's `folder_name`
    (resumed from there when it was stopped); `train_epochs(session, start_epoch, optimizer_state)` is the
    epoch loop. Returns the session's folder once every epoch of the plan ran (or it ended early, as the plan
    allows), None when stopped. Epoch ends become messages starting with `label`, batches progress of `phase`."""
    folder = s.info.run_dir / folder_name
    folder.mkdir(exist_ok=True)
    info = replace(s.info, run_dir=folder, plan=plan.to_dict(), status="running", config=config)
    built = create_model(config.model, config.weights, len(s.info.classes), s.info.kept_weights)
    session = TrainingSession(info, index, s.control, plan, built)
    optimizer_state = session.restore() if info.has_checkpoint else None
    try:
        for event in train_epochs(session, session.state["epoch"] + 1, optimizer_state):
            if isinstance(event, EpochEnd):
                yield Message("info", _epoch_words(label, event))
            elif isinstance(event, Message) and event.level != "info":    # its own notes would repeat the run's
                yield event
            elif isinstance(event, BatchProgress) and event.phase == "train":
                yield replace(event, phase=phase)
    finally:
        session.close()
    if session.state["epoch"] < plan.total_epochs and not session.state["ended_early"]:
        return None
    return folder


def _epoch_words(label: str, event: EpochEnd) -> str:
    what = " (linear probe)" if event.stage == "probe" else ""
    validation = (f" | validation loss {event.val_loss:.3f}, accuracy {event.val_accuracy:.1%}"
                  if event.val_loss == event.val_loss else "")      # NaN without validation images
    return (f"{label} {event.epoch}/{event.epochs}{what}: train loss {event.train_loss:.3f}, accuracy "
            f"{event.train_accuracy:.1%}{validation} ({event.seconds:.0f} s).")
