"""``python -m chatdsl``: the ``chatdsl`` command (see :mod:`chatdsl._cli`)."""

from chatdsl._cli import main

raise SystemExit(main())
