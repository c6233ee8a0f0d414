"""``python -m xmodal_lib ...`` is the same as the ``xmodal`` console script."""
from xmodal_lib.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
