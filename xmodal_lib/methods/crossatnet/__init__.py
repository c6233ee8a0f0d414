"""CrossATNet (IVC 2020), notebook 03: ``config``, ``model`` (cross-modal attention, hash heads),
``gcn`` (class graph and graph CNN), ``semantics`` (class-name embeddings the GCN starts from),
``losses``, ``data`` (zero-shot index, seen-only guard), ``pipeline`` (training and evaluation).
"""
