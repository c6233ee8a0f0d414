"""One package per paper method (``xmodalvit``, ``crossatnet``, ``zse``), ``compare`` (all methods on
one zero-shot split, notebooks 05/06) and ``reported`` (the papers' numbers, as data).

Import the module you need, e.g. ``from xmodal_lib.methods.zse import pipeline``.
"""
