"""`python -m genba ...`: the `genba` command without its console script."""

from genba.cli import main

main()
