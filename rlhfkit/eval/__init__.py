"""Evaluate what RLHF did (SPEC section 8): win rates against a baseline with confidence intervals
and a length-controlled variant (stats.py), diversity and mode collapse (diversity.py), reward-model
over-optimisation (overopt.py), and the commands ``rlhfkit eval`` (compare.py) and
``rlhfkit eval overopt`` (bon_overopt.py)."""
