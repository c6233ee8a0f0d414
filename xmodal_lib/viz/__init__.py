"""Figures: one style, one ``save_fig``; data, retrieval and explanation plots."""
