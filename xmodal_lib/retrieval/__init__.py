"""Retrieval evaluation engine: metrics (acc@K, mAP conventions, P@K), exact search, Hamming codes.

Import from the submodules (``xmodal_lib.retrieval.metrics``, ``.search``, ``.codes``,
``.faiss_backend``); the common names are re-exported here.
"""
from xmodal_lib.retrieval.codes import (hamming_distance, hamming_scores_matmul, hamming_topk, pack_bits, to_codes,
                                        unpack_bits)
from xmodal_lib.retrieval.metrics import (average_precision_per_query, category_metrics, category_metrics_from_embeddings,
                                          category_metrics_per_query, fg_accuracy, fg_ranks, precision_recall_curve)
from xmodal_lib.retrieval.search import Gallery, Hits, similarity, topk

__all__ = [
    "fg_accuracy", "fg_ranks", "category_metrics", "category_metrics_per_query",
    "category_metrics_from_embeddings", "average_precision_per_query", "precision_recall_curve",
    "similarity", "topk", "Gallery", "Hits",
    "to_codes", "pack_bits", "unpack_bits", "hamming_distance", "hamming_scores_matmul", "hamming_topk",
]
