"""The ``roomserver-loadtest`` command: says which extra to install when its libraries are missing.

``loadtest.cli`` imports hdrhistogram and matplotlib, which come with the ``loadtest`` extra
(``make serve`` and ``make test`` install it); a plain ``pip install roomserver`` does not.
"""

from __future__ import annotations

import sys

EXTRA_MODULES = ("hdrh", "matplotlib")


def main() -> int:
    try:
        from loadtest.cli import main as run
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in EXTRA_MODULES:
            raise
        print(
            f"roomserver-loadtest: {missing} is missing: install the 'loadtest' extra"
            " (pip install 'roomserver[loadtest]', or from a checkout: make serve)",
            file=sys.stderr,
        )
        return 2
    return run()


if __name__ == "__main__":
    sys.exit(main())
