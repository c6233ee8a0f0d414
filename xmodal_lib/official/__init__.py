"""Load, convert and evaluate the authors' released checkpoints (ZSE-SBIR, XModalViT).

* :mod:`.safe_load` — read official ``.pth`` files without executing code (``weights_only``,
  numpy-scalar allow-list, ``.xz`` fixtures).
* :mod:`.keymap` — strict official -> xmodal key mapping (unused tensors listed by name).
* :mod:`.loaders` — our models from official files, conversion to safetensors + JSON.
* :mod:`.evaluate` — the papers' protocols from a checkpoint, next to the reported numbers.
* :mod:`.commands` — ``xmodal convert-official`` and ``xmodal evaluate``.
"""
from xmodal_lib.official.keymap import KeyMappingError
from xmodal_lib.official.loaders import (
    convert_official,
    load_converted,
    load_official_student,
    load_official_teacher,
    load_official_zse,
)
from xmodal_lib.official.safe_load import UntrustedPickleError, read_official

__all__ = ["KeyMappingError", "UntrustedPickleError", "read_official", "load_official_zse",
           "load_official_teacher", "load_official_student", "convert_official", "load_converted"]
