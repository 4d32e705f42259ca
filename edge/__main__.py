"""`python -m fer_edge ...` is `fer-edge ...`."""

from fer_edge.cli import main

main()
