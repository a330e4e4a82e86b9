"""`edge-agent insurance launch` (the insurance cloud's viewer-plugin launch) and `edge-agent idcas
link` (a signed IDCAS page URL), from a config."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ValidationError

from agent.cli import EXIT_CONFIG, EXIT_FAILURE, config_option
from agent.config import load_config
from agent.errors import ConfigError
from agent.plugins import PLUGIN_KINDS
from agent.uplinks.idcas_archive.config import IdcasArchiveConfig
from agent.uplinks.idcas_archive.links import LinkError
from agent.uplinks.idcas_archive.pages import PAGES
from agent.uplinks.idcas_archive.uplink import IdcasArchiveUplink
from agent.uplinks.insurance_imaging.config import InsuranceImagingConfig
from agent.uplinks.insurance_imaging.uplink import launcher
from agent.uplinks.kit.request import TRANSPORT_ERRORS

T = TypeVar("T")


def add_parser(commands: Any) -> None:
    """Add `insurance launch` and `idcas link` to the CLI."""
    _add_idcas(commands)
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
    found = _only_uplink(
        args, InsuranceImagingConfig, "insurance_imaging uplink with [viewer] on", _with_viewer
    )
    if found is None:
        return EXIT_CONFIG
    _, section = found
    try:
        forms = launcher(section)(json.loads(sys.stdin.read()))
    except (ValueError, ValidationError) as err:
        print(f"stdin: {err}", file=sys.stderr)
        return EXIT_FAILURE
    print(forms[args.form] if args.form else json.dumps(forms, ensure_ascii=False, indent=2))
    return 0


def _add_idcas(commands: Any) -> None:
    idcas = commands.add_parser("idcas", help="the IDCAS cloud archive (seed 002)")
    actions = idcas.add_subparsers(required=True, metavar="ACTION")
    link = actions.add_parser(
        "link",
        help="a page's URL signed now, from its parameters (JSON on stdin, as the local API);"
        " H5 pages fetch the user token from the platform",
    )
    config_option(link)
    link.add_argument(
        "page", choices=sorted(PAGES), help="the page (docs/platforms/idcas_archive.md)"
    )
    link.add_argument("--uplink", help="the idcas_archive uplink (default: the only one)")
    link.set_defaults(func=cmd_idcas_link)


def cmd_idcas_link(args: argparse.Namespace) -> int:
    """Read the page's parameters from stdin, print its signed URL."""
    found = _only_uplink(args, IdcasArchiveConfig, "idcas_archive uplink")
    if found is None:
        return EXIT_CONFIG
    name, section = found
    try:
        values = json.loads(sys.stdin.read() or "{}")
        if not isinstance(values, dict):
            raise LinkError(["stdin: must be a JSON object of the page's parameters"])
        url = asyncio.run(_link(IdcasArchiveUplink(name, section), args.page, values))
    except (ValueError, LinkError) as err:
        print(f"stdin: {err}", file=sys.stderr)
        return EXIT_FAILURE
    except TRANSPORT_ERRORS as err:
        print(f"{name}: no user token from the platform: {type(err).__name__}", file=sys.stderr)
        return EXIT_FAILURE
    print(url)
    return 0


def _only_uplink(
    args: argparse.Namespace,
    kind: type[T],
    what: str,
    wanted: Callable[[T], bool] = lambda _: True,
) -> tuple[str, T] | None:
    """The config's one uplink of `kind` that is `wanted` (named by --uplink if several), or
    None after saying why on stderr."""
    try:
        config = load_config(args.config, PLUGIN_KINDS)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return None
    found = [
        (name, section)
        for name, section in config.uplinks.items()
        if isinstance(section, kind) and wanted(section) and args.uplink in (None, name)
    ]
    if len(found) != 1:
        which = "no" if not found else "more than one (name one with --uplink)"
        print(f"{args.config}: {which} {what}", file=sys.stderr)
        return None
    return found[0]


def _with_viewer(section: InsuranceImagingConfig) -> bool:
    return section.viewer.enabled


async def _link(uplink: IdcasArchiveUplink, page: str, values: dict[str, Any]) -> str:
    try:
        return await uplink.fresh_link(page, values)
    finally:
        await uplink.close()
