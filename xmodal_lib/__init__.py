"""xmodal: reproducible companion to XModalViT, CrossATNet and ZSE-SBIR.

The library is imported by the numbered notebooks in ``notebooks/``; every heavy
sub-module is imported lazily so ``import xmodal_lib`` stays cheap.
"""

__version__ = "0.1.0"

# OpenMP reads OMP_WAIT_POLICY once, when torch is first imported: set the thread policy before that
# (xmodal_lib/infra/threads.py; XMODAL_OMP_WAIT_POLICY=default opts out).
from xmodal_lib.infra.threads import prepare_environment as _prepare_environment  # noqa: E402

_prepare_environment()
