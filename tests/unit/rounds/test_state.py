"""The rounds state machine: where a rerun resumes, and what it never redoes."""

import json

import pytest

from rlhfkit.rounds.state import STEPS, RoundsState, StateError, next_step


def test_fresh_run_starts_at_round_one_sample():
    assert next_step({}, 2) == (1, "sample")


def test_resumes_mid_round_at_first_unfinished_step():
    done = {1: {"sample": {}, "select": {}, "label": {}}}
    assert next_step(done, 2) == (1, "rm")


def test_a_finished_round_moves_to_the_next():
    done = {1: {s: {} for s in STEPS}}
    assert next_step(done, 2) == (2, "sample")
    assert next_step({1: {s: {} for s in STEPS}, 2: {s: {} for s in STEPS}}, 2) is None


def test_more_rounds_asked_later_continue_the_run():
    done = {1: {s: {} for s in STEPS}, 2: {s: {} for s in STEPS}}
    assert next_step(done, 3) == (3, "sample")


def test_a_gap_is_filled_in_step_order():
    # "rm" recorded but "label" not (a hand-edited file): label is what runs next
    assert next_step({1: {"sample": {}, "select": {}, "rm": {}}}, 1) == (1, "label")


def test_state_round_trips_through_the_file(tmp_path):
    st = RoundsState()
    st.mark(1, "sample", {"pairs": 3})
    st.save(tmp_path)
    back = RoundsState.load(tmp_path)
    assert back.info(1, "sample")["pairs"] == 3 and "finished_at" in back.info(1, "sample")
    assert back.next_step(1) == (1, "select")
    assert json.loads((tmp_path / "state.json").read_text())["steps"] == list(STEPS)


def test_unknown_step_and_bad_file(tmp_path):
    with pytest.raises(ValueError):
        RoundsState().mark(1, "train")
    (tmp_path / "state.json").write_text("[1, 2]")
    with pytest.raises(StateError, match="state.json"):
        RoundsState.load(tmp_path)
