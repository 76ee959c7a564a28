"""``python -m mlpilot``: the same command as the ``mlpilot`` console script."""

from mlpilot.cli.main import main

if __name__ == "__main__":
    main()
