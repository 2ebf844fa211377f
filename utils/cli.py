"""What every command line of this package does the same way: options generated from the config
dataclasses, and a user's mistake printed as one line (exit status 2), not a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .config import add_arguments, from_dict, values_from_args
from .errors import PipelineError


def run(
    prog: str,
    description: str,
    classes: Sequence[type],
    main: Callable,
    argv: Sequence[str] | None = None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """Parse `--name value`, `--config FILE`, `--set name=value` for the fields of `classes`
    (plus what `extra` adds), build each config and call `main(args, *configs)`; its return
    value is the exit status. PipelineError and a missing file end with `error: ...` and 2."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    if extra is not None:
        extra(parser)
    add_arguments(parser, *classes)
    args = parser.parse_args(argv)
    try:
        configs = [
            from_dict(cls, values)
            for cls, values in zip(classes, values_from_args(args, *classes), strict=True)
        ]
        return main(args, *configs) or 0
    except (PipelineError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
