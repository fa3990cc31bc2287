"""``python -m visearch.cli``: the same as the `visearch` command."""

from visearch.cli.main import main

main()
