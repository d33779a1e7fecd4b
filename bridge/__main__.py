"""`python -m bridge ...`: the bridge commands alone (what `genba bridge ...` runs), for controllers
and test harnesses that should not depend on the other packages' commands importing cleanly."""

from __future__ import annotations

from bridge.cli import make_app
from genba.runner import run_app

app = make_app()
app.pretty_exceptions_enable = False


def main() -> None:
    run_app(app, prog_name="python -m bridge")


if __name__ == "__main__":
    main()
