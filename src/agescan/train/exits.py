"""How a train step (``agescan train prepare|fit|publish|...``) ends on a user's mistake: one line on stderr naming
the step and what to do, and the command line's exit status (``agescan --help``): 2 for a usage error (a bad option
value, a missing or wrong input, an output that exists: :class:`~agescan.errors.InputError`), 3 for a model or
configuration error (:class:`~agescan.errors.ConfigError`, an unknown model, weights failing their sha256 check).
Anything else is a defect and keeps its traceback."""

from __future__ import annotations

import sys
from contextlib import contextmanager

from agescan.errors import ConfigError, InputError, ModelIntegrityError, ModelNotFoundError


class StepExit(SystemExit):
    """The exit of a step that refused its input: ``code`` is the exit status, ``str()`` the line it printed."""

    def __init__(self, code: int, message: str):
        super().__init__(code)
        self.message = message

    def __str__(self) -> str:
        return self.message


@contextmanager
def step_errors(prog: str):
    """Run a step's main body: an :class:`InputError` becomes exit 2, a configuration or model error exit 3, each
    printed as ``PROG: message`` on one line (the same from ``agescan train STEP`` and ``python -m``)."""
    try:
        yield
    except (ConfigError, ModelNotFoundError, ModelIntegrityError) as exc:
        message = f"{prog}: {exc}"
        print(message, file=sys.stderr)
        raise StepExit(3, message) from None
    except InputError as exc:
        message = f"{prog}: {exc}"
        print(message, file=sys.stderr)
        raise StepExit(2, message) from None
