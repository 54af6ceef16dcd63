"""`python -m utils.training train|runs|hpo` (see cli.py).

The stop handlers are set before anything heavy is imported, so a Ctrl-C or SIGTERM ends
the command with one line and exit 130 or 143 wherever it lands, start-up imports included.
"""

import sys

from utils.training.engine import signals

signals.install_stop_handlers()


def _run() -> int:
    try:
        from utils.training.cli import main

        return main()
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - re-raised unless a stop signal caused it
        if not (isinstance(e, KeyboardInterrupt) or signals.stop_received()):
            raise
        print(f"{signals.describe(e)} before the command had started: nothing was written; run it again",
              file=sys.stderr)
        return signals.exit_code(e)


sys.exit(_run())
