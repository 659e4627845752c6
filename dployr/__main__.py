"""``python -m dployr`` runs the command line."""

from dployr.cli import main

main()
