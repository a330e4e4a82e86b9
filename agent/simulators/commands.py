"""`edge-agent simulate PLATFORM`: a fake cloud in the foreground, with its control API."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

CONTROL_OFFSET = 100  # the control API's default port: the platform's port plus this


def add_parser(commands: Any) -> None:
    """Add `simulate zhejiang-endoscope | remote-imaging | http-cloud | insurance-imaging |
    idcas-archive | results-sharing | provincial-imaging`."""
    simulate = commands.add_parser(
        "simulate",
        help="run a fake cloud in the foreground, with a control API (docs/simulators.md)",
    )
    platforms = simulate.add_subparsers(dest="platform", required=True, metavar="PLATFORM")
    zhejiang = platforms.add_parser(
        "zhejiang-endoscope",
        aliases=["zhejiang_endoscope"],
        help="Zhejiang infection-control platform, endoscope module (seed 000)",
    )
    _common_options(zhejiang, 8790)
    zhejiang.add_argument(
        "--access-key", default="edge-agent", help="the accessKey it accepts (%(default)s)"
    )
    zhejiang.add_argument(
        "--access-secret", default="simulator-secret", help="the accessSecret it accepts"
    )
    zhejiang.add_argument(
        "--token-ttl", type=float, default=7200.0, help="token lifetime, seconds (%(default)s)"
    )
    zhejiang.set_defaults(func=cmd_simulate_zhejiang)
    imaging = platforms.add_parser(
        "remote-imaging",
        aliases=["remote_imaging"],
        help="city remote-imaging platform (seed 003): HTTP + storage SCP",
    )
    _common_options(imaging, 8791)
    imaging.add_argument(
        "--dicom-port", type=int, default=11113, help="its storage SCP's port (%(default)s)"
    )
    imaging.add_argument("--license", default="simulator-license", help="the license it accepts")
    imaging.add_argument(
        "--private-key",
        type=Path,
        help="PEM file (default: the key in --state-dir, made there once; else a new key pair)",
    )
    imaging.set_defaults(func=cmd_simulate_remote_imaging)
    cloud = platforms.add_parser(
        "http-cloud",
        aliases=["http_cloud"],
        help="the generic JSON ingest cloud (POST /ingest, OAuth2 POST /token)",
    )
    _common_options(cloud, 8780)
    cloud.add_argument("--client-id", default="", help="the client_id it accepts")
    cloud.add_argument(
        "--client-secret", help="when given, /ingest needs a bearer token from /token"
    )
    cloud.set_defaults(func=cmd_simulate_http_cloud)
    insurance = platforms.add_parser(
        "insurance-imaging",
        aliases=["insurance_imaging"],
        help="medical-insurance imaging cloud's front-end (seed 004): QR, notices, hrball",
    )
    _common_options(insurance, 8792)
    insurance.add_argument("--hospital-id", default="H33010200001", help="the hospitalId it takes")
    insurance.add_argument(
        "--report-url", help="the agent's report service, for polling from the control API"
    )
    insurance.set_defaults(func=cmd_simulate_insurance_imaging)
    idcas = platforms.add_parser(
        "idcas-archive",
        aliases=["idcas_archive"],
        help="IDCAS cloud archive (seed 002): auth centre, gateway WebApis, portal pages that"
        " verify signed links",
    )
    _common_options(idcas, 8793)
    idcas.add_argument("--client-id", default="edge-agent", help="the client_id it accepts")
    idcas.add_argument("--client-secret", default="simulator-secret", help="its client_secret")
    idcas.add_argument("--username", default="his", help="the account it accepts")
    idcas.add_argument("--password", default="simulator-password", help="the account's password")
    idcas.add_argument(
        "--des-key", default="eWorldTomTaw#7=*", help="3DES key (the seed's test key)"
    )
    idcas.add_argument("--md5-key", default="TomtawMD5Key", help="MD5 key (the seed's test key)")
    idcas.add_argument(
        "--user-token-ttl", type=float, default=43200.0, help="user token lifetime (%(default)s s)"
    )
    idcas.set_defaults(func=cmd_simulate_idcas_archive)
    sharing = platforms.add_parser(
        "results-sharing",
        aliases=["results_sharing"],
        help="results-sharing platform (seed 001), validating with a mapping set",
    )
    _common_options(sharing, 8793)
    sharing.add_argument("--app-id", default="edge-agent", help="the appId it accepts")
    sharing.add_argument("--app-secret", default="simulator-secret", help="the secret it accepts")
    sharing.add_argument(
        "--mappings",
        type=Path,
        help="the mapping folder (platform.toml, fields.toml) the uplink uses (default: ours)",
    )
    sharing.add_argument(
        "--token-ttl", type=float, default=7200.0, help="token lifetime, seconds (%(default)s)"
    )
    sharing.set_defaults(func=cmd_simulate_results_sharing)
    province = platforms.add_parser(
        "provincial-imaging",
        aliases=["provincial_imaging"],
        help="provincial imaging platform (seed 003 §3.4): SynApplyInfo (SOAP), calls back"
        " SynStatusInfo",
    )
    _common_options(province, 8794)
    province.add_argument(
        "--license", default="F9BDEFC9EDD6426E57E9DFEFE3A74FA2", help="the License it accepts"
    )
    province.add_argument("--hospital-id", default="7173", help="the prefix of SickNo/ApplyNo")
    province.add_argument(
        "--status-url", help="the hospital's SynStatusInfo (the agent's listener)"
    )
    province.add_argument(
        "--auto-status",
        default="",
        help="statuses reported after each INSERT, comma-separated (e.g. 20,50,70)",
    )
    province.set_defaults(func=cmd_simulate_provincial_imaging)


def _common_options(parser: argparse.ArgumentParser, port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    parser.add_argument("--port", type=int, default=port, help="HTTP port (%(default)s)")
    parser.add_argument(
        "--control-host",
        default="127.0.0.1",
        help="address of the control API (%(default)s; it has no authentication)",
    )
    parser.add_argument(
        "--control-port",
        type=int,
        help=f"port of the control API (default: --port plus {CONTROL_OFFSET}; 0: a free one)",
    )
    parser.add_argument("--no-control", action="store_true", help="serve no control API")
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="keep tokens, keys, the platform's memory and what it received here, across"
        " restarts (default: nothing kept)",
    )


def _control(args: argparse.Namespace) -> tuple[str, int] | None:
    if args.no_control:
        return None
    port = args.control_port
    if port is None:
        port = args.port + CONTROL_OFFSET if args.port else 0
    return args.control_host, port


def _print_control(server: Any) -> None:
    print(f"control_url = {server.url}", flush=True)


def _run(main: Coroutine[Any, Any, None]) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main)
    return 0


def cmd_simulate_zhejiang(args: argparse.Namespace) -> int:
    """Serve the Zhejiang endoscope platform simulator until interrupted."""
    from agent.simulators.zhejiang_endoscope import serve

    return _run(
        serve(
            args.host,
            args.port,
            access_key=args.access_key,
            access_secret=args.access_secret,
            token_ttl=args.token_ttl,
            ready=lambda sim: print(f"base_url = {sim.base_url}", flush=True),
            control=_control(args),
            control_ready=_print_control,
            state_dir=args.state_dir,
        )
    )


def cmd_simulate_remote_imaging(args: argparse.Namespace) -> int:
    """Serve the remote-imaging platform simulator until interrupted."""
    from agent.simulators.remote_imaging import serve

    key = args.private_key.read_text(encoding="ascii") if args.private_key else None

    def ready(sim: Any) -> None:
        print(f"base_url = {sim.base_url}", flush=True)
        print(f"dicom = {sim.config.ae_title}@{sim.host}:{sim.dicom_port}", flush=True)
        print(f"public_key = '''\n{sim.public_key}'''", flush=True)

    return _run(
        serve(
            args.host,
            args.port,
            dicom_port=args.dicom_port,
            license=args.license,
            private_key=key,
            ready=ready,
            control=_control(args),
            control_ready=_print_control,
            state_dir=args.state_dir,
        )
    )


def cmd_simulate_http_cloud(args: argparse.Namespace) -> int:
    """Serve the generic HTTP cloud simulator until interrupted."""
    from agent.simulators.http_cloud import HttpCloudConfig, serve

    settings: dict[str, Any] = {"type": "http_cloud", "host": args.host, "port": args.port}
    settings["client_id"] = args.client_id
    if args.client_secret is not None:
        settings["client_secret"] = args.client_secret

    def ready(sim: Any) -> None:
        print(f"url = {sim.url}/ingest", flush=True)
        print(f"token_url = {sim.url}/token", flush=True)

    return _run(
        serve(
            HttpCloudConfig.model_validate(settings),
            ready=ready,
            control=_control(args),
            control_ready=_print_control,
            state_dir=args.state_dir,
        )
    )


def cmd_simulate_insurance_imaging(args: argparse.Namespace) -> int:
    """Serve the insurance imaging cloud's front-end simulator until interrupted."""
    from agent.simulators.insurance_imaging import InsuranceImagingSimulatorConfig, serve

    settings: dict[str, Any] = {
        "type": "insurance_imaging",
        "host": args.host,
        "port": args.port,
        "hospital_id": args.hospital_id,
        "report_url": args.report_url,
    }

    def ready(sim: Any) -> None:
        print(f"frontend_url = {sim.url}", flush=True)
        print(f"deletion_url = {sim.url}{sim.config.deletion_path}", flush=True)
        print(f"hrball_url = {sim.url}/hrball/", flush=True)
        print(f"sm2_public_key = {sim.public_key}", flush=True)

    return _run(
        serve(
            InsuranceImagingSimulatorConfig.model_validate(settings),
            ready=ready,
            control=_control(args),
            control_ready=_print_control,
            state_dir=args.state_dir,
        )
    )


def cmd_simulate_idcas_archive(args: argparse.Namespace) -> int:
    """Serve the IDCAS cloud archive simulator until interrupted."""
    from agent.simulators.idcas_archive import IdcasArchiveSimulatorConfig, serve

    config = IdcasArchiveSimulatorConfig.model_validate(
        {
            "type": "idcas_archive",
            "host": args.host,
            "port": args.port,
            "client_id": args.client_id,
            "client_secret": args.client_secret,
            "username": args.username,
            "password": args.password,
            "des_key": args.des_key,
            "md5_key": args.md5_key,
            "user_token_ttl": args.user_token_ttl,
        }
    )

    def ready(sim: Any) -> None:
        print(f"auth_url = {sim.url}/auth", flush=True)
        print(f"gateway_url = {sim.url}/api", flush=True)
        print(f"doc_gateway_url = {sim.url}/doc", flush=True)
        print(f"portal_url = {sim.url}", flush=True)
        print(f"sev = {sim.sev}", flush=True)

    return _run(
        serve(
            config,
            ready=ready,
            control=_control(args),
            control_ready=_print_control,
            state_dir=args.state_dir,
        )
    )


def cmd_simulate_results_sharing(args: argparse.Namespace) -> int:
    """Serve the results-sharing platform simulator until interrupted."""
    from agent.simulators.results_sharing import ResultsSharingSimulatorConfig, serve

    settings: dict[str, Any] = {
        "type": "results_sharing",
        "host": args.host,
        "port": args.port,
        "app_id": args.app_id,
        "app_secret": args.app_secret,
        "token_ttl": args.token_ttl,
    }
    if args.mappings is not None:
        settings["mappings"] = args.mappings.resolve()

    def ready(sim: Any) -> None:
        print(f"base_url = {sim.base_url}", flush=True)
        print(f"mappings = {sim.mapping.folder}", flush=True)

    return _run(
        serve(
            ResultsSharingSimulatorConfig.model_validate(settings),
            ready=ready,
            control=_control(args),
            control_ready=_print_control,
            state_dir=args.state_dir,
        )
    )


def cmd_simulate_provincial_imaging(args: argparse.Namespace) -> int:
    """Serve the provincial imaging platform simulator until interrupted."""
    from agent.simulators.provincial_imaging import ProvincialImagingSimulatorConfig, serve

    config = ProvincialImagingSimulatorConfig.model_validate(
        {
            "type": "provincial_imaging",
            "host": args.host,
            "port": args.port,
            "license": args.license,
            "hospital_id": args.hospital_id,
            "status_url": args.status_url,
            "auto_status": [s.strip() for s in args.auto_status.split(",") if s.strip()],
        }
    )

    def ready(sim: Any) -> None:
        print(f"service_url = {sim.service_url}", flush=True)

    return _run(
        serve(
            config,
            ready=ready,
            control=_control(args),
            control_ready=_print_control,
            state_dir=args.state_dir,
        )
    )
