"""``python -m clients.design css [-o PATH]`` — write the tokens as CSS custom properties
(default: the web console's `clients/web/src/console/tokens.css`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from clients.design._css import CONSOLE_CSS, write_css


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m clients.design", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("css", help="the tokens as CSS custom properties")
    export.add_argument("-o", "--output", type=Path, default=CONSOLE_CSS)
    args = parser.parse_args()
    changed = write_css(args.output)
    print(f"{args.output}: {'written' if changed else 'unchanged'}")


if __name__ == "__main__":
    main()
