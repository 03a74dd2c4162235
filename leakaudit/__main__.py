"""``python -m leakaudit``: the same command line as the ``leakaudit`` script (useful where the
venv's bin folder is not on PATH)."""

from leakaudit.cli import run

if __name__ == "__main__":
    run()
