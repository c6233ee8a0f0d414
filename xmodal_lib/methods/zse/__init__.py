"""ZSE-SBIR (CVPR 2023), notebook 04: ``model`` (SA -> CA -> RN) with ``sa``, ``ca``, ``rn``,
``losses``, ``data`` (the paper's batches), ``pipeline`` (run config and training),
``evaluate`` (ret / rn / rn_rerank retrieval) and ``rn_evaluate`` (exhaustive CA + RN scoring).
"""
