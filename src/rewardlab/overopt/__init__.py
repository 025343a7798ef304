"""Over-optimization (Gao, Schulman and Hilton, arXiv:2210.10760): gold reward against the optimization distance
``d = sqrt(KL(pi || pi_ref))`` when a policy is optimized against a proxy reward model.

* ``curves``: best-of-N (unbiased over subsets of a candidate pool) and KL-regularized (the tilted optimum over the
  pool) curves of gold and proxy reward against d;
* ``fits``: Gao et al.'s functional forms fitted to those points, with the predicted peak;
* ``harness``: the two on a candidate file with gold labels and any proxy :class:`~rewardlab.scoring.Scorer`.
"""

__all__: list[str] = []
