"""Train a run: plan it (the automatic recipe) or take the user's own settings, then run the plan's stages.

`train_run` is the one entry point of the CLI and the window. It yields plain events (core.events) and
checks a stop flag every batch; the stages, the step and the loop live in `core.training`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from desktop_tl.core.control import RunControl
from desktop_tl.core.data.index import DatasetIndex
from desktop_tl.core.errors import UserError
from desktop_tl.core.events import Failed, Finished, Message, TrainEvent
from desktop_tl.core.models.factory import create_model
from desktop_tl.core.models.structure import data_config
from desktop_tl.core.runs import checkpoint
from desktop_tl.core.runs.folder import RunInfo, load_index, open_run, write_run_info
from desktop_tl.core.training import distributed
from desktop_tl.core.training.devices import amp_dtype_for, pick_device
from desktop_tl.core.training.loop import run_events
from desktop_tl.core.training.plan import ModelFacts, Plan
from desktop_tl.core.training.planner import plan_auto, plan_custom
from desktop_tl.core.training.session import TrainingSession

__all__ = ["RunControl", "make_plan", "train_run"]


def make_plan(info: RunInfo, index: DatasetIndex) -> tuple[Plan, tuple | None]:
    """The run's plan, and the model built to measure this machine's speed (None for a custom run).

    "custom" takes the settings as they are. "auto" summarises the data, measures (or recalls) the
    throughput of the model on this device and plans within the time budget (core.training.plan).
    """
    cfg = info.config
    if cfg.recipe == "custom":
        return replace(plan_custom(cfg), multi_label=index.multi_label), None
    import torch

    from desktop_tl.core.data.preprocess import Preprocessing
    from desktop_tl.core.training.probe import has_linear_head, splits_cleanly
    from desktop_tl.core.training.summary import summarize_data
    from desktop_tl.core.training.throughput import measure_throughput
    from desktop_tl.core.training.tuning import choose_layout

    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model, weights = create_model(cfg.model, cfg.weights, len(info.classes), info.kept_weights)
    native = int(data_config(model)["input_size"][-1])
    layout = choose_layout(cfg.memory_format, device, model, cfg.model, (native, native), 16, "all")
    speed, recalled = measure_throughput(model, cfg.model, native, device, layout.channels_last,
                                         amp_dtype_for(device))
    probe_ok = has_linear_head(model) and splits_cleanly(model, Preprocessing.from_data_config(data_config(model)))
    facts = ModelFacts(cfg.model, native, weights.pretrained, probe_ok)
    plan = plan_auto(summarize_data(index), facts, speed, cfg.budget, cfg.orientation, cfg.batch_size or None)
    size = plan.image_size or native
    used = (f"Planned with this computer's speed for {cfg.model} at {size} px: {speed.train_ips(size):.0f} images/s "
            f"fine-tuning, {speed.forward_ips(size):.0f} images/s evaluating "
            f"({'remembered from an earlier run' if recalled else 'measured now'}).")
    return replace(plan, reasons=(*plan.reasons, used)), (model, weights)


def _plan_once(info: RunInfo, index: DatasetIndex) -> tuple[Plan, tuple | None]:
    """The run's plan: the one in run.json, or for a run that has none yet a new one, recorded there (rank 0
    plans; under torchrun every rank takes its plan); and the model built for planning, if any, to train it
    rather than build it again."""
    if info.plan is not None:
        return Plan.from_dict(info.plan), None
    plan, built = make_plan(info, index) if distributed.is_main() else (None, None)
    info.plan = distributed.broadcast_object(plan.to_dict() if plan else None)
    if distributed.is_main():
        write_run_info(info)
    return Plan.from_dict(info.plan), built


def train_run(run_dir: Path, control: RunControl | None = None, data_root: Path | None = None
              ) -> Iterator[TrainEvent]:
    """Train (or resume) the run in `run_dir`, yielding events; a finished run yields Finished at once.

    User-facing problems end the stream with a Failed event instead of raising.
    """
    control = control or RunControl()
    try:
        info = open_run(run_dir)
        if info.finished:
            meta = checkpoint.read_meta(Path(run_dir) / checkpoint.LAST)
            total = Plan.from_dict(info.plan).total_epochs if info.plan else info.config.epochs
            yield Finished(meta["epoch"], total, True, False, meta["best_epoch"], meta["best_val_loss"], None)
            return
        index = load_index(run_dir, data_root)
        if info.plan is None and info.config.recipe == "auto":
            yield Message("info", f"Planning the run: measuring how fast this computer runs {info.config.model} "
                                  "(a few seconds the first time; remembered for later runs)…")
        plan, built = _plan_once(info, index)
        session = TrainingSession(info, index, control, plan, built)
        optimizer_state = session.restore() if info.has_checkpoint else None
        distributed.broadcast_module(session.model)   # every rank starts from rank 0's weights
        yield from run_events(session, optimizer_state)
    except UserError as exc:
        yield Failed(exc.what, exc.hint)
