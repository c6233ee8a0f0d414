"""XModalViT (BMVC'22), notebooks 01-02: ``config`` (run config, fields = notebook parameters),
``model`` (fusion teacher with XMA blocks, unimodal students), ``xaqc`` (queue contrastive loss),
``rkd`` (relational distillation, XMRD), ``data`` (fine-grained triplets), ``pipeline`` (teacher,
distillation, triplet baseline, evaluation).
"""
