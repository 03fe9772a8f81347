"""`python -m quarch`: the same command as the `quarch` script."""

from quarch.cli import main

main()
