"""`python -m dgn_cli` runs the same app as the `dgn` console script."""

from dgn_cli.cli import main

if __name__ == "__main__":
    main()
