"""`python -m ganmodel ...` is the `ganmodel` command (see `ganmodel.registry.cli`)."""

from ganmodel.registry.cli import main

if __name__ == "__main__":
    main()
