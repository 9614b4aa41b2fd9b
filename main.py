"""SSL Explorer: `python main.py` opens the app; `python main.py train|compare|eval|embed|export|methods|runs ...`
is the CLI."""

import sys


def main() -> int:
    if len(sys.argv) > 1:
        from ssl_engine.cli import main as cli_main

        return cli_main(sys.argv[1:])
    try:
        from app.main import run_app
    except ImportError as error:  # e.g. PySide6 missing from a headless install
        print(f"error: the window needs PySide6 and pyqtgraph ({error}); install them with "
              f"`pip install -e .`, or use the command line: `python main.py train --help`", file=sys.stderr)
        return 2
    return run_app()


if __name__ == "__main__":  # the guard keeps spawned DataLoader / torchrun workers from re-running it
    sys.exit(main())
