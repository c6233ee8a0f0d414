"""xmodal: reproducible companion to XModalViT, CrossATNet and ZSE-SBIR.

The library is imported by the numbered notebooks in ``notebooks/``; every heavy
sub-module is imported lazily so ``import xmodal_lib`` stays cheap.
"""

__version__ = "0.1.0"
