"""The CPU memory layout is measured once per model and workload, remembered, and kept by a resumed run."""

from __future__ import annotations

import json

import pytest
import torch

from desktop_tl.core.config import SplitConfig, TrainConfig
from desktop_tl.core.errors import UserError
from desktop_tl.core.events import Failed, Message
from desktop_tl.core.models.factory import create_model
from desktop_tl.core.paths import user_cache_dir
from desktop_tl.core.runs import checkpoint
from desktop_tl.core.runs.folder import create_run
from desktop_tl.core.training import tuning
from desktop_tl.core.training.run import train_run
from desktop_tl.core.training.step import Stepper

from helpers import train_until_saved

CPU = torch.device("cpu")
SPLIT = SplitConfig(val_fraction=0.2, test_fraction=0.2, seed=3)


@pytest.fixture()
def fresh_tuning(tmp_path, monkeypatch):
    """An empty tuning memory for this test."""
    monkeypatch.setenv("DESKTOP_TL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / tuning.TUNING_FILE


def _model():
    torch.manual_seed(0)
    model, _ = create_model("efficientnet_lite0", "bundled", 3)
    return model


def test_explicit_layouts_and_gpus_are_not_measured(monkeypatch):
    monkeypatch.setattr(tuning, "measure_channels_last_speedup", lambda *a: pytest.fail("measured"))
    for fmt in ("channels_last", "contiguous"):
        assert tuning.choose_layout(fmt, CPU, None, "m", (64, 64), 8, "head").memory_format == fmt
    assert tuning.choose_layout("auto", torch.device("cuda"), None, "m", (64, 64), 8, "head").channels_last
    assert not tuning.choose_layout("auto", torch.device("mps"), None, "m", (64, 64), 8, "head").channels_last


def test_measurement_leaves_the_model_and_the_random_state_untouched():
    model = _model()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    speedup = tuning.measure_channels_last_speedup(model, (64, 64), 4)
    assert 0.05 < speedup < 20
    assert torch.equal(rng, torch.get_rng_state())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)   # BatchNorm statistics included
    assert all(p.grad is None for p in model.parameters())
    assert next(model.parameters()).is_contiguous()


def test_auto_measures_once_then_remembers(fresh_tuning, monkeypatch):
    calls = []

    def fake_measure(model, size, batch):
        calls.append((size, batch))
        return 1.3

    monkeypatch.setattr(tuning, "measure_channels_last_speedup", fake_measure)
    first = tuning.choose_layout("auto", CPU, None, "efficientnet_lite0", (64, 64), 32, "all")
    assert first.channels_last and not first.remembered and calls == [((64, 64), tuning.PROBE_BATCH)]   # probe batch capped
    assert "measured now" in first.describe() and "x1.30" in first.describe()
    second = tuning.choose_layout("auto", CPU, None, "efficientnet_lite0", (64, 64), 32, "all")
    assert second.channels_last and second.remembered and len(calls) == 1
    stored = json.loads(fresh_tuning.read_text())
    assert list(stored.values()) == [{"channels_last_speedup": 1.3}]
    # another workload is measured on its own; a small gain keeps the standard layout
    monkeypatch.setattr(tuning, "measure_channels_last_speedup", lambda *a: 1.02)
    other = tuning.choose_layout("auto", CPU, None, "efficientnet_lite0", (64, 64), 32, "head")
    assert not other.channels_last and other.speedup == 1.02
    assert other.describe().startswith("CPU memory layout: standard; channels-last would run x1.02")


def test_a_damaged_tuning_file_means_measuring_again(fresh_tuning, monkeypatch):
    fresh_tuning.parent.mkdir(parents=True)
    fresh_tuning.write_text("{not json")
    monkeypatch.setattr(tuning, "measure_channels_last_speedup", lambda *a: 0.8)
    choice = tuning.choose_layout("auto", CPU, None, "resnet18", (64, 64), 8, "all")
    assert choice.memory_format == "contiguous" and not choice.remembered
    assert json.loads(fresh_tuning.read_text())   # rewritten whole


def test_unknown_memory_format_is_a_clear_error():
    with pytest.raises(UserError, match="memory layout"):
        TrainConfig(memory_format="nhwc").validate()


def test_run_records_its_layout_and_resume_keeps_it(fresh_tuning, tmp_path, small_dataset, monkeypatch):
    monkeypatch.setattr(tuning, "measure_channels_last_speedup", lambda *a: 1.5)
    run = tmp_path / "run"
    create_run(run, small_dataset, TrainConfig(recipe="custom", epochs=2, batch_size=8, image_size=64, num_workers=0,
                                               freeze="last:1", augment="none"), SPLIT)
    events = train_until_saved(run)
    assert not any(isinstance(e, Failed) for e in events)
    assert any(isinstance(e, Message) and "channels-last" in e.text for e in events)
    assert checkpoint.read_meta(run / checkpoint.LAST)["memory_format"] == "channels_last"

    # the machine's answer changed since (new measurement), but the run continues as it started
    fresh_tuning.unlink()
    monkeypatch.setattr(tuning, "measure_channels_last_speedup", lambda *a: pytest.fail("measured on resume"))
    seen_layouts = []
    original_step = Stepper._step

    def spy(self, inputs, labels, global_count, mode="model"):
        seen_layouts.append("channels_last" if self.channels_last else "contiguous")
        return original_step(self, inputs, labels, global_count, mode)

    monkeypatch.setattr(Stepper, "_step", spy)
    events = list(train_run(run))
    assert not any(isinstance(e, Failed) for e in events), events[-1]
    assert set(seen_layouts) == {"channels_last"}
    assert checkpoint.read_meta(run / checkpoint.LAST)["memory_format"] == "channels_last"
    assert user_cache_dir() / tuning.TUNING_FILE == fresh_tuning


# -- automatic batch size ---------------------------------------------------------------------------------

@pytest.mark.parametrize("capacity", [1, 5, 31, 32, 33, 100, 300, 511, 1000])
def test_batch_search_finds_the_largest_fitting_batch_in_few_probes(capacity):
    tried = []

    def fits(batch):
        tried.append(batch)
        return batch <= capacity

    found, probes = tuning.search_batch_size(fits, limit=512)
    assert found <= min(capacity, 512)
    assert found >= min(capacity, 512) * 7 / 8          # within 1/8 below the true largest
    assert probes == len(tried) <= 9
    assert max(tried) <= 512


def test_batch_search_when_nothing_fits():
    assert tuning.search_batch_size(lambda b: False, limit=512)[0] == 0


def test_batch_limit_leaves_several_steps_per_epoch():
    assert tuning.batch_limit(40) == 8
    assert tuning.batch_limit(1000) == 64
    assert tuning.batch_limit(10**6) == tuning.AUTO_BATCH_LIMIT


def test_memory_probe_finds_a_simulated_memory_limit_and_leaves_the_model_alone(monkeypatch):
    import timm.models.efficientnet as effnet

    real_forward = effnet.EfficientNet.forward

    def forward_with_memory_for_24(self, x):
        if x.shape[0] > 24:
            raise torch.OutOfMemoryError("out of memory (simulated)")
        return real_forward(self, x)

    monkeypatch.setattr(effnet.EfficientNet, "forward", forward_with_memory_for_24)
    model = _model()
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    search = tuning.automatic_batch_size(model, CPU, (32, 32), 512, False, None)
    assert search.largest_fitting in range(21, 25)
    assert search.batch_size == 16                        # 90% of 21..24, down to a multiple of 8
    assert "largest that fits" in search.describe("the test device")
    assert not model.training and torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_auto_batch_size_on_a_cpu_is_32_at_most_and_kept_on_resume(fresh_tuning, tmp_path, small_dataset):
    run = tmp_path / "run"
    config = TrainConfig(recipe="custom", epochs=2, batch_size=0, image_size=64, num_workers=0, augment="none",
                         memory_format="contiguous")
    create_run(run, small_dataset, config, SPLIT)
    events = train_until_saved(run)
    assert events[0].batch_size == 8            # 24 training images: 8 keeps 3 steps per epoch
    assert any(isinstance(e, Message) and e.text == "Automatic batch size: 8 (capped for 24 training images, so "
               "that an epoch has several steps)." for e in events)
    events = list(train_run(run))
    assert events[0].batch_size == 8 and not any(isinstance(e, Failed) for e in events)
    assert checkpoint.read_meta(run / checkpoint.LAST)["batch_size"] == 8


def test_cli_accepts_batch_size_auto():
    from desktop_tl.cli import build_parser

    args = build_parser().parse_args(["train", "data", "--out", "run", "--batch-size", "auto"])
    assert args.batch_size == 0
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "data", "--out", "run", "--batch-size", "many"])


# -- torch.compile only when it pays for itself -------------------------------------------------------------

def test_compile_pays_off_only_for_long_enough_runs():
    steps = [5.0, 5.0] + [0.5] * 6                    # warm-up steps do not count
    worth, why = tuning.compile_pays_off(steps, remaining_steps=10_000)
    assert worth and "10000 steps left at 0.500 s" in why
    assert not tuning.compile_pays_off(steps, remaining_steps=100)[0]


@pytest.mark.parametrize("cost, compiled", [(0.0, True), (1e9, False)])
def test_compile_is_decided_after_timed_eager_steps(cost, compiled, tmp_path, small_dataset, monkeypatch):
    calls = []
    monkeypatch.setattr(tuning, "COMPILE_SECONDS", cost)
    monkeypatch.setattr(torch, "compile", lambda model: calls.append(model) or model)
    run = tmp_path / "run"
    create_run(run, small_dataset, TrainConfig(recipe="custom", epochs=1, batch_size=2, image_size=64, num_workers=0, augment="none",
                                               freeze="all", compile=True, memory_format="contiguous"), SPLIT)
    events = list(train_run(run))
    assert not any(isinstance(e, Failed) for e in events), events[-1]
    notes = [e.text for e in events if isinstance(e, Message) and e.text.startswith("torch.compile")]
    assert len(notes) == 1 and ("compiling the model now" in notes[0]) == compiled
    assert len(calls) == int(compiled)
