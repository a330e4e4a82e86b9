"""`edge-agent insurance launch`: the insurance cloud's viewer-plugin launch, from a config."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pydantic import ValidationError

from agent.cli import EXIT_CONFIG, EXIT_FAILURE, config_option
from agent.config import load_config
from agent.errors import ConfigError
from agent.plugins import PLUGIN_KINDS
from agent.uplinks.insurance_imaging.config import InsuranceImagingConfig
from agent.uplinks.insurance_imaging.uplink import launcher


def add_parser(commands: Any) -> None:
    """Add `insurance launch` to the CLI."""
    insurance = commands.add_parser("insurance", help="the medical-insurance imaging cloud")
    actions = insurance.add_subparsers(required=True, metavar="ACTION")
    launch = actions.add_parser(
        "launch",
        help="the viewer plugin's launch forms for a doctor (JSON on stdin, as the local API)",
    )
    config_option(launch)
    launch.add_argument("--uplink", help="the insurance_imaging uplink (default: the only one)")
    launch.add_argument(
        "--form", choices=["command_line", "url", "http"], help="print only this form"
    )
    launch.set_defaults(func=cmd_launch)


def cmd_launch(args: argparse.Namespace) -> int:
    """Read the doctor's JSON from stdin, print the launch forms (or one of them)."""
    try:
        config = load_config(args.config, PLUGIN_KINDS)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return EXIT_CONFIG
    found = {
        name: section
        for name, section in config.uplinks.items()
        if isinstance(section, InsuranceImagingConfig) and section.viewer.enabled
    }
    if args.uplink is not None:
        found = {n: s for n, s in found.items() if n == args.uplink}
    if len(found) != 1:
        which = "no" if not found else "more than one (name one with --uplink)"
        print(f"{args.config}: {which} insurance_imaging uplink with [viewer] on", file=sys.stderr)
        return EXIT_CONFIG
    (section,) = found.values()
    try:
        forms = launcher(section)(json.loads(sys.stdin.read()))
    except (ValueError, ValidationError) as err:
        print(f"stdin: {err}", file=sys.stderr)
        return EXIT_FAILURE
    print(forms[args.form] if args.form else json.dumps(forms, ensure_ascii=False, indent=2))
    return 0
