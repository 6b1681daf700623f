"""``python -m fastiou``: the ``fastiou`` command (see :mod:`fastiou.cli`).

With no command it runs the demo, the classic IoU example on every engine available here;
``python -m fastiou --help`` lists the commands (eval, info, bench, demo).
"""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m fastiou"))
