import pytest
import torch

from rlhfkit.rewards import RewardError, load_reward


def test_builtin_rules():
    prompts = ["a", "b", "c"]
    responses = ["I love Paris", "nothing here", "PARIS!"]
    assert load_reward("contains:paris")(prompts, responses).tolist() == [1.0, 0.0, 1.0]
    assert load_reward(r"regex:^\w+$")(prompts, ["one", "two words", "x"]).tolist() == [1.0, 0.0, 1.0]
    assert load_reward("length:2")(["p"], ["one two three four"]).tolist() == [2.0]


def test_python_function_and_dict_contract(tmp_path):
    file = tmp_path / "myreward.py"
    file.write_text("def score(prompts, responses):\n"
                    "    return {'rewards': [len(r) for r in responses], 'logs': {'n': len(responses)}}\n")
    source = load_reward(f"{file}:score")
    assert source(["p", "q"], ["abc", "a"]).tolist() == [3.0, 1.0]
    assert source.last_logs == {"n": 2}


def test_plain_callable_is_first_class():
    source = load_reward(lambda prompts, responses: torch.ones(len(responses)))
    assert source(["x"], ["y"]).tolist() == [1.0]


@pytest.mark.parametrize("spec, message", [
    ("nonsense", "not a reward-model folder"),
    ("regex:(", "bad regular expression"),
    ("python:no_such_module_xyz:f", "cannot import"),
])
def test_bad_specs_are_named(spec, message):
    with pytest.raises(RewardError, match=message):
        load_reward(spec)


def test_wrong_output_size_is_an_error():
    source = load_reward(lambda p, r: [1.0])
    with pytest.raises(RewardError, match="returned 1 rewards for 2 responses"):
        source(["a", "b"], ["c", "d"])
