"""End-to-end method pipelines the notebooks call (config presets, data, training stages, evaluation).

Import the method's module directly, e.g. ``from xmodal_lib.pipelines import xmodalvit``.
"""
