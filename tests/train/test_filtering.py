"""Oversampling-filtering-ranking on hand-made groups."""

from __future__ import annotations

import pytest

from pyvision_train.filtering import FilterConfig, Outcome, keep_trajectory, select_groups

DONE, TURNS, ERROR = "DONE", "EXCEED_MAX_TURNS", "ERROR_IN_ACTION"


def group(*rewards, reason=DONE, looked=True):
    return [Outcome(r, reason, looked) for r in rewards]


def test_tied_groups_are_dropped_and_the_rest_ranked_by_std():
    groups = [group(1, 1), group(0, 1), group(0, 0.5), group(0, 0), group(0, 1.3)]
    selection = select_groups(groups, 2, FilterConfig())
    assert selection.groups == (4, 1)  # std 0.65, then 0.5; 0.25 loses; ties (0, 3) never pass
    assert selection.keep == ((True, True), (True, True))
    assert selection.num_passed == 3
    assert selection.group_pass_rate == pytest.approx(3 / 5)


def test_without_ranking_groups_keep_draw_order():
    groups = [group(0, 0.5), group(0, 1.3), group(0, 1)]
    assert select_groups(groups, 2, FilterConfig(rank_by_std=False)).groups == (0, 1)


def test_tied_groups_pass_when_that_filter_is_off():
    selection = select_groups([group(1, 1), group(0, 1)], 2, FilterConfig(drop_tied_groups=False))
    assert set(selection.groups) == {0, 1} and selection.num_passed == 2


def test_end_reasons_drop_trajectories_but_groups_stay_whole():
    mixed = [Outcome(1, DONE), Outcome(0, "OVER_LENGTH"), Outcome(0, TURNS), Outcome(0.1, ERROR)]
    selection = select_groups([mixed], 1, FilterConfig())
    assert selection.groups == (0,)
    assert selection.keep == ((True, False, True, True),)
    assert selection.dropped_by == {"OVER_LENGTH": 1}
    assert selection.trajectory_pass_rate == pytest.approx(3 / 4)


def test_sandbox_failure_is_always_dropped():
    everything = FilterConfig(keep_end_reasons=("DONE", "EXCEED_MAX_TURNS", "ERROR_IN_ACTION", "OVER_LENGTH",
                                                "EXCEED_MAX_IMAGES", "EXCEED_TIME_BUDGET"))
    assert not keep_trajectory(Outcome(1.0, "SANDBOX_FAILURE"), everything)
    assert not keep_trajectory(Outcome(1.0, "INVALID_OUTPUT"), everything)
    assert not keep_trajectory(Outcome(1.0, "JUDGE_FAILURE"), everything)  # the judge's fault
    with pytest.raises(ValueError, match=r"cannot keep \[.SANDBOX_FAILURE.\]"):
        FilterConfig(keep_end_reasons=("DONE", "SANDBOX_FAILURE"))


def test_a_sandbox_failure_does_not_enter_the_group_statistics():
    # kept rewards (1, 1) tie once the failed trajectory's 0 is left out: no signal, group dropped
    groups = [[Outcome(1, DONE), Outcome(1, DONE), Outcome(0, "SANDBOX_FAILURE")], group(0, 1, 1)]
    selection = select_groups(groups, 1, FilterConfig())
    assert selection.groups == (1,)


def test_require_image_drops_trajectories_that_never_looked():
    outcomes = [Outcome(1, DONE, True), Outcome(0, DONE, False), Outcome(0, DONE, True)]
    assert select_groups([outcomes], 1, FilterConfig(require_image=True)).keep == ((True, False, True),)
    assert select_groups([outcomes], 1, FilterConfig()).keep == ((True, True, True),)


def test_a_short_batch_is_padded_with_failed_groups_fully_dropped():
    selection = select_groups([group(1, 1), group(0, 1), group(0, 0)], 2, FilterConfig())
    assert selection.groups == (1, 0)
    assert selection.keep == ((True, True), (False, False))
    assert selection.num_passed == 1


def test_oversampling_counts_extra_groups():
    assert FilterConfig().extra_groups(8) == 0
    assert FilterConfig(oversample=1.5).extra_groups(8) == 4
    with pytest.raises(ValueError, match="oversample must be >= 1.0"):
        FilterConfig(oversample=0.5)


def test_unknown_end_reasons_are_named():
    with pytest.raises(ValueError, match="unknown end reasons \\['DNOE'\\]"):
        FilterConfig(keep_end_reasons=("DNOE",))
