"""``python -m chatdsl``: the ``chatdsl`` command (see :mod:`chatdsl.cli.main`)."""

from chatdsl.cli.main import main

raise SystemExit(main())
