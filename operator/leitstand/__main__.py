"""``python -m leitstand`` is the same as the ``leitstand`` command."""

from leitstand import cli

cli.main()
