"""The planner is a pure function: data summary + model + measured throughput + budget -> plan."""

from __future__ import annotations

import pytest

from desktop_tl.core.config import BUDGET_PRESETS, TrainConfig, parse_budget
from desktop_tl.core.errors import UserError
from desktop_tl.core.reporting import duration as format_seconds
from desktop_tl.core.training.plan import DataSummary, FineTuneStage, ModelFacts, Plan, ProbeStage, Throughput
from desktop_tl.core.training.planner import plan_auto, plan_custom

LITE0 = ModelFacts("efficientnet_lite0", 224, True)
# Roughly what a 2-core laptop measures for EfficientNet-Lite0 (images/s): evaluation and fine-tuning.
LAPTOP = Throughput("cpu", forward=((96, 320.0), (224, 60.0)), train=((96, 95.0), (224, 16.0)))
DIGITS = DataSummary(train_counts=(20,) * 10, val_images=50, test_images=50, median_side=32, grayscale=True)
INSPECTION = DataSummary(train_counts=(574, 1262), val_images=394, test_images=394, median_side=300, grayscale=True)


def _stages(plan: Plan) -> list[str]:
    return [s.kind for s in plan.stages]


def test_small_images_get_probe_then_fine_tuning_upscaled_within_the_quick_budget():
    plan = plan_auto(DIGITS, LITE0, LAPTOP, BUDGET_PRESETS["quick"])
    assert _stages(plan) == ["probe", "baseline", "finetune"]   # the check can replace fine-tuning
    assert plan.image_size > DIGITS.median_side and plan.crop_pct == 1.0
    assert plan.estimated_seconds["total"] <= BUDGET_PRESETS["quick"]
    probe, finetune = plan.stages[0], plan.stage("finetune")
    # cross-validated fits cost more: in two minutes the probe compares originals and mirrored copies only
    assert isinstance(probe, ProbeStage) and probe.view_sets == ("fixed", "mirror")
    assert plan.cross_validation == 5 and any("cross-validation" in line for line in plan.describe())
    assert any("the rest of the budget trains more of them" in line for line in plan.describe())   # anytime
    assert plan_auto(DIGITS, LITE0, LAPTOP, BUDGET_PRESETS["balanced"]).stages[0].view_sets == ("fixed", "mirror",
                                                                                                "free")
    assert plan_auto(INSPECTION, LITE0, LAPTOP, BUDGET_PRESETS["balanced"]).cross_validation == 0   # 2,230 images
    assert isinstance(finetune, FineTuneStage) and finetune.freeze == "all" and finetune.batchnorm == "frozen"
    assert finetune.flips == "probe" and finetune.layer_decay < 1 and finetune.patience >= 3
    assert not finetune.colour_jitter                        # grey images: no colour jitter
    assert not plan.class_weighted and not plan.choose_threshold
    assert plan.total_epochs == 1 + finetune.epochs
    assert any("enlarged" in reason for reason in plan.reasons)


def test_imbalanced_two_classes_are_weighted_and_get_a_threshold():
    plan = plan_auto(INSPECTION, LITE0, LAPTOP, BUDGET_PRESETS["balanced"])
    assert plan.class_weighted and plan.choose_threshold
    assert any("2.2x" in reason for reason in plan.reasons)
    assert plan.estimated_seconds["total"] <= BUDGET_PRESETS["balanced"]


def test_more_budget_never_means_less_training():
    plans = [plan_auto(INSPECTION, LITE0, LAPTOP, BUDGET_PRESETS[name]) for name in ("quick", "balanced", "best")]
    epochs = [p.total_epochs for p in plans]
    seconds = [p.estimated_seconds["total"] for p in plans]
    assert epochs == sorted(epochs) and seconds == sorted(seconds)
    assert plans[-1].image_size == 224                       # the best budget trains at the model's own size
    assert all(p.estimated_seconds["total"] <= BUDGET_PRESETS[n] for p, n in zip(plans, ("quick", "balanced", "best")))


def test_a_budget_too_short_to_fine_tune_means_the_probe_alone():
    plan = plan_auto(INSPECTION, LITE0, LAPTOP, 45.0)
    assert _stages(plan) == ["probe", "baseline"]
    assert plan.total_epochs == 1
    assert plan.stages[0].view_sets == ("fixed",)            # flipped views would not fit either
    assert any("linear probe alone" in reason for reason in plan.reasons)


def test_colour_images_get_colour_jitter_and_orientation_settings_are_kept():
    colour = DataSummary((30, 30, 30), 15, 15, 144, grayscale=False)
    fixed = plan_auto(colour, LITE0, LAPTOP, 600.0, orientation="fixed")
    assert fixed.stages[0].view_sets == ("fixed",) and fixed.stages[0].views == ("identity",)
    assert fixed.stage("finetune").flips == "fixed" and fixed.stage("finetune").colour_jitter
    free = plan_auto(colour, LITE0, LAPTOP, 600.0, orientation="free")
    assert free.stages[0].views == ("identity", "hflip", "vflip", "rot90") and free.stage("finetune").flips == "free"
    with pytest.raises(UserError):
        plan_auto(colour, LITE0, LAPTOP, 600.0, orientation="sideways")


def test_a_model_without_a_linear_head_is_fine_tuned_without_a_probe():
    plan = plan_auto(DIGITS, ModelFacts("odd_net", 224, True, probe_ok=False), LAPTOP, 600.0)
    assert _stages(plan) == ["finetune", "baseline"]
    assert plan.stages[0].batchnorm == "train" and plan.stages[0].flips == "mirror"


def test_on_a_gpu_the_batch_size_is_searched_and_random_weights_skip_the_check():
    gpu = Throughput("cuda", forward=((96, 9000.0), (224, 3000.0)), train=((96, 3000.0), (224, 900.0)))
    plan = plan_auto(INSPECTION, ModelFacts("resnet50", 224, False), gpu, 600.0)
    assert plan.batch_size == 0 and plan.image_size == 224
    assert "baseline" not in _stages(plan)
    assert plan.stages[1].lr == 5e-4                          # resnet family default


def test_plan_round_trip_and_epoch_mapping():
    plan = plan_auto(DIGITS, LITE0, LAPTOP, 600.0)
    again = Plan.from_dict(plan.to_dict())
    assert again == plan
    assert plan.stage_at(1)[0].kind == "probe"
    finetune = plan.stage("finetune")
    assert plan.stage_at(2) == (finetune, 1)
    assert plan.stage_at(plan.total_epochs) == (finetune, finetune.epochs)
    with pytest.raises(IndexError):
        plan.stage_at(plan.total_epochs + 1)
    assert plan.first_epoch_of(finetune) == 2
    text = "\n".join(plan.describe())
    assert "Linear probe" in text and "Fine-tune every layer" in text and "Estimated time" in text
    assert "becomes the model and fine-tuning is skipped" in text
    with pytest.raises(UserError, match="plan"):
        Plan.from_dict({"stages": [{"kind": "dance"}]})


def test_the_custom_recipe_is_one_fine_tuning_stage_with_the_settings_given():
    plan = plan_custom(TrainConfig(recipe="custom", epochs=5, freeze="last:2", lr=3e-3, layer_decay=0.8,
                                   weight_decay=0.05, warmup_epochs=1.0, label_smoothing=0.1, augment="light",
                                   early_stopping_patience=2, image_size=96, batch_size=16, class_weighted=True))
    assert _stages(plan) == ["finetune"] and plan.total_epochs == 5
    stage = plan.stages[0]
    assert (stage.freeze, stage.lr, stage.layer_decay, stage.augment, stage.patience) == ("last:2", 3e-3, 0.8, "light", 2)
    assert plan.image_size == 96 and plan.crop_pct is None and plan.class_weighted and not plan.choose_threshold


def test_throughput_is_interpolated_by_pixel_count():
    assert LAPTOP.forward_ips(224) == pytest.approx(60.0) and LAPTOP.forward_ips(96) == pytest.approx(320.0)
    values = [LAPTOP.train_ips(s) for s in (64, 96, 128, 160, 192, 224, 288)]
    assert all(a > b for a, b in zip(values, values[1:])) and all(v > 0 for v in values)


@pytest.mark.parametrize("text, seconds", [("quick", 120), ("balanced", 600), ("best", 3600), ("10m", 600),
                                           ("90s", 90), ("1h30m", 5400), ("20", 1200)])
def test_budgets_are_read_from_names_and_durations(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["soon", "5s", "10x", "", "-3m"])
def test_bad_budgets_are_clear_errors(text):
    with pytest.raises(UserError, match="time budget"):
        parse_budget(text)


def test_durations_read_like_durations():
    assert (format_seconds(45), format_seconds(600), format_seconds(4000)) == ("45 s", "10 min", "1 h 7 min")


def test_a_small_sets_plan_trains_again_on_train_and_val_with_the_time_the_budget_leaves():
    tight, roomy = (plan_auto(DIGITS, LITE0, LAPTOP, BUDGET_PRESETS[name]) for name in ("balanced", "best"))
    estimate, scale = roomy.estimated_seconds, (200 + 50) / 200
    assert estimate["refit"] == pytest.approx(scale * (estimate["probe"] + estimate["finetune"]), abs=0.2)
    assert estimate["total"] <= BUDGET_PRESETS["best"]
    assert any("trained again on the training and validation images together" in line for line in roomy.describe())
    assert "refit" not in tight.estimated_seconds          # size and epochs first: no room left for it
    assert tight.image_size == 224 and not any("trained again" in line for line in tight.describe())
    large = plan_auto(INSPECTION, LITE0, LAPTOP, BUDGET_PRESETS["best"])     # validated on its split: no refit
    assert "refit" not in large.estimated_seconds
