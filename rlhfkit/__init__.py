"""rlhfkit: the whole RLHF loop on a laptop CPU, and the same code on a cluster.

Heavy dependencies (torch, transformers) are imported lazily so that ``import rlhfkit`` and the
data/feedback/loss modules stay cheap.
"""

__version__ = "0.1.0"


def load_reward_model(path, **kwargs):
    """Load a reward model (or ensemble) saved by ``rlhfkit rm train``; see rlhfkit.models.reward."""
    from rlhfkit.models.reward import load_reward_model as _load

    return _load(path, **kwargs)
