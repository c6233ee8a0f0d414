"""Losses shared by several methods (triplet margin losses): pure tensor functions, no distribution, no I/O.

A method's own losses live beside its model: ``xmodal_lib.methods.<method>.losses`` (XModalViT:
``xaqc`` and ``rkd``).
"""
