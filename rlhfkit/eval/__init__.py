"""Evaluate what RLHF did (SPEC section 8): win rates against a baseline with confidence intervals
and a length-controlled variant (stats.py), diversity and mode collapse (diversity.py), reward-model
over-optimisation (overopt.py), and the commands ``rlhfkit eval`` (compare.py) and
``rlhfkit eval overopt`` (bon_overopt.py); compute cost before a run, ``rlhfkit plan`` (cost.py: the
FLOP formulas, plan.py: each stage's unit of work, plan_cli.py: the command)."""
