"""Infrastructure, no model code: ``paths``, ``errors``, ``atomic_io``, ``checkpoint`` (safetensors +
JSON sidecar), ``distributed`` (torchrun, DDP, gathers), ``threads`` (CPU thread policy), ``devices``
(which device a config asks for, which one a model is on).
"""
