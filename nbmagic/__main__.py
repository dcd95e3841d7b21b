"""``python -m nbmagic``: see :mod:`nbmagic.cli`."""

from nbmagic.cli import main

raise SystemExit(main())
