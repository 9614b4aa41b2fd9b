"""SSL Explorer: `python main.py` opens the app; `python main.py train|eval|methods ...` is the CLI."""

import sys


def main() -> int:
    if len(sys.argv) > 1:
        from ssl_engine.cli import main as cli_main

        return cli_main(sys.argv[1:])
    try:
        from app.main import run_app
    except ImportError:
        # The window is not built yet: train the default experiment on the bundled data instead.
        from ssl_engine.cli import main as cli_main

        print("The explorer window is not available yet; training SimCLR on the bundled shapes set "
              "headless instead (see `python main.py train --help`).", file=sys.stderr)
        return cli_main(["train", "--method", "simclr", "--dataset", "shapes", "--epochs", "10"])
    return run_app()


if __name__ == "__main__":  # the guard keeps spawned DataLoader / torchrun workers from re-running it
    sys.exit(main())
