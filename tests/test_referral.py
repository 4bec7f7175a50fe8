"""Selective prediction: the referral threshold's guarantee, on scores where the right answer is known."""

import numpy as np
import pytest
from scipy.stats import beta

from desktop_tl.core.decision import ANSWERED, UNCERTAIN, UNFAMILIAR, Decision, Familiarity, Referral, statuses
from desktop_tl.core.evaluation.referral import (
    REFUSE_ALL,
    choose_referral,
    clopper_pearson_upper,
    risk_coverage_curve,
    selective_figures,
)

CLASSES = ["a", "b"]


@pytest.mark.parametrize("errors,total,alpha", [(0, 60, 0.05), (3, 100, 0.05), (10, 400, 0.005), (49, 50, 0.1)])
def test_clopper_pearson_matches_the_beta_quantile(errors, total, alpha):
    assert clopper_pearson_upper(errors, total, alpha) == pytest.approx(beta.ppf(1 - alpha, errors + 1, total - errors),
                                                                         abs=1e-9)


def _two_blocks(sure: int, unsure: int):
    """`sure` images answered right with probability 0.91-0.99, then `unsure` all wrong at 0.51-0.59."""
    rng = np.random.default_rng(0)
    p_sure = rng.uniform(0.91, 0.99, sure)
    p_unsure = rng.uniform(0.51, 0.59, unsure)
    labels = np.zeros(sure + unsure, dtype=int)
    p_class_a = np.r_[p_sure, 1 - p_unsure]            # the unsure block is given "b", and is "a"
    return labels, np.c_[p_class_a, 1 - p_class_a]


def test_the_threshold_answers_the_sure_images_and_few_of_the_others():
    labels, probs = _two_blocks(600, 400)
    referral = choose_referral(labels, probs, CLASSES, target=0.05)
    figures = selective_figures(labels, probs, CLASSES, None, referral)
    # every sure image is answered; each unsure one answered is an error, and the bound allows about 2.5% of them
    assert 600 <= figures["answered"] <= 600 * 1.04
    assert figures["error_among_answered"] <= 0.05
    assert referral.threshold <= 0.91


def test_a_target_the_data_cannot_support_refers_everything():
    labels, probs = _two_blocks(600, 400)
    # 0 errors in 600 answered images bounds the error at about 0.9% at best: 0.1% cannot be promised
    referral = choose_referral(labels, probs, CLASSES, target=0.001)
    assert referral.threshold == REFUSE_ALL
    assert selective_figures(labels, probs, CLASSES, None, referral)["answered"] == 0


def test_the_guarantee_holds_over_repeated_draws():
    """A model whose confidence p is right with probability p: the population's error among answered images at
    threshold t is known in closed form, and exceeds the target in at most 5% of the draws."""
    rng = np.random.default_rng(1)
    target, exceeded, draws = 0.05, 0, 60

    def population_error(t):      # confidences uniform on [0.5, 1]: mean of (1 - p) over p >= t
        return (1 - (t + 1) / 2) if t < 1 else 0.0

    for _ in range(draws):
        p = rng.uniform(0.5, 1.0, 500)
        labels = (rng.uniform(size=500) > p).astype(int)     # class 0 is given; wrong with probability 1 - p
        referral = choose_referral(labels, np.c_[p, 1 - p], CLASSES, target=target)
        exceeded += population_error(min(referral.threshold, 1.0)) > target
    assert exceeded / draws <= 0.1


def test_two_classes_refer_by_the_probability_of_the_class_the_operating_point_gives():
    decision = Decision("b", 0.3)
    probs = np.array([[0.65, 0.35], [0.2, 0.8], [0.9, 0.1]])
    referral = Referral(0.6, 0.05)
    # "b" at 0.35 (given by the 0.3 threshold) is unsure; "b" at 0.8 and "a" at 0.9 are answered
    assert statuses(probs, CLASSES, decision, referral) == [UNCERTAIN, ANSWERED, ANSWERED]
    familiarity = Familiarity(10.0)
    assert statuses(probs, CLASSES, decision, referral, np.array([1.0, 11.0, 1.0]), familiarity) == \
        [UNCERTAIN, UNFAMILIAR, ANSWERED]
    assert statuses(probs, CLASSES) == [ANSWERED] * 3


def test_risk_coverage_curve_runs_from_the_surest_image_to_all():
    labels, probs = _two_blocks(6, 4)
    curve = risk_coverage_curve(labels, probs, CLASSES)
    assert curve["coverage"][-1] == 1.0 and curve["error"][-1] == pytest.approx(0.4)
    assert curve["error"][5] == 0.0 and curve["coverage"][5] == pytest.approx(0.6)


def test_rules_read_back_from_json_and_refuse_damage():
    referral = Referral(0.8, 0.05, 0.95, "validation")
    assert Referral.from_dict(referral.to_dict()) == referral
    assert Referral.from_json('{"threshold": "x", "target": 0.05, "confidence": 0.95}') is None
    assert Referral.from_json("not json") is None
    assert Familiarity.from_dict(Familiarity(12.5).to_dict()) == Familiarity(12.5)
    assert Familiarity.from_dict({"threshold": float("nan")}) is None


def test_a_small_held_out_set_still_answers_its_surest_images():
    """40 images: a search starting at the median would see 20 error-free images, too few for a 20% target at
    this confidence, and go the wrong way; the search starts where an answer can meet the target."""
    labels, probs = _two_blocks(30, 10)
    figures = selective_figures(labels, probs, CLASSES, None, choose_referral(labels, probs, CLASSES, target=0.2))
    assert 25 <= figures["answered"] <= 32


def test_saving_another_operating_point_chooses_the_referral_again_for_it(tmp_path):
    import json

    from desktop_tl.core.config import SplitConfig, TrainConfig
    from desktop_tl.core.evaluation.metrics import compute_metrics
    from desktop_tl.core.evaluation.operating_point import choose_decision
    from desktop_tl.core.runs.folder import RunInfo, open_run, write_run_info

    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 400)
    positive = np.clip(np.where(labels == 1, rng.normal(0.75, 0.2, 400), rng.normal(0.3, 0.2, 400)), 0.001, 0.999)
    probs = np.stack([1 - positive, positive], 1)
    classes = ["good", "defective"]
    run = tmp_path / "run"
    run.mkdir()
    referral = choose_referral(labels, probs, classes, None, target=0.1)
    write_run_info(RunInfo(run, TrainConfig(), SplitConfig(), classes, "finished", referral=referral))
    (run / "metrics.json").write_text(json.dumps({"val": compute_metrics(labels, probs, classes, positive="defective")}))
    decision = choose_decision(run, "sensitivity", 0.95)
    saved = open_run(run).referral
    expected = choose_referral(labels, probs, classes, decision, 0.1, referral.confidence, referral.chosen_on)
    assert saved.threshold == pytest.approx(expected.threshold, abs=1e-5)   # metrics.json keeps 6 decimals
    assert (saved.target, saved.chosen_on) == (0.1, "validation")
    assert saved.threshold != referral.threshold        # under the new threshold the images' confidences moved


def test_the_fewest_images_that_can_show_a_target_at_all():
    from desktop_tl.core.evaluation.referral import images_to_show

    assert [images_to_show(t) for t in (0.01, 0.05, 0.1)] == [299, 59, 29]   # 0.95**59 < 0.05 < 0.95**58
    sure = np.tile([[0.02, 0.98]], (59, 1))
    assert choose_referral(np.ones(59, dtype=int), sure, CLASSES, target=0.05).threshold == pytest.approx(0.98)
    assert choose_referral(np.ones(58, dtype=int), sure[:58], CLASSES, target=0.05).threshold == REFUSE_ALL
