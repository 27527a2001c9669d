"""``python -m gardien.demo build [--prefix P] [--scale N] [--seed S] [--force] [--verify] [--json]``."""

from __future__ import annotations

from gardien.cli.demo import main

if __name__ == "__main__":
    main()
