"""Loss functions: pure tensor functions (no distribution, no I/O), one family per module."""
