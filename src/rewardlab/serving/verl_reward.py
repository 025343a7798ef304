"""The file to give verl as ``reward.custom_reward_function.path``: verl imports that path as a standalone module
(``importlib.util.spec_from_file_location``), without a parent package, so the file it loads must use absolute
imports only; this one re-exports the adapter functions (:mod:`rewardlab.serving.adapters`).

    python -m verl.trainer.main_ppo ... \\
        reward.custom_reward_function.path=$(python -c "import rewardlab.serving.verl_reward as m; print(m.__file__)") \\
        reward.custom_reward_function.name=compute_score

with ``REWARDLAB_REWARD_URL`` (a ``rewardlab serve`` address) or ``REWARDLAB_REWARD_MODEL`` (a folder) set in the
workers' environment. Tested through verl 0.9.1's own loader and reward managers (``tests/interop/test_verl.py``).
"""

from rewardlab.serving.adapters import compute_score, compute_score_batch

__all__ = ["compute_score", "compute_score_batch"]
