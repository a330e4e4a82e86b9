"""Idle cost: the agent with the demo's sources, uplinks and simulators, and no traffic.

Run from the repository root: `.venv/bin/python -m bench.idle` (see `--help`).
config/demo.toml without what makes traffic (the station readers' script, the synthetic
sensor) runs as `edge-agent run` for `--duration` s: its readers stay connected and silent.
CPU time (user + system) and RSS of the agent's process are sampled from /proc every
`--sample` s. It records the result in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agent.toml_out import dumps
from bench.ingest import _cpu_model, command_line, cpu_count, record

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "demo.toml"
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- bench.idle:begin -->"
END = "<!-- bench.idle:end -->"
TARGET_RSS_MB = 80.0
TARGET_CPU_PERCENT = 1.0


@dataclass(frozen=True, slots=True)
class Sample:
    """The agent's CPU seconds so far and RSS at one moment."""

    seconds: float
    cpu_seconds: float
    rss_mb: float


def idle_config(state_dir: Path) -> str:
    """config/demo.toml without its traffic, its state in `state_dir`."""
    config = tomllib.loads(DEMO.read_text(encoding="utf-8"))
    config["agent"]["state_dir"] = str(state_dir)
    config["agent"]["stats_interval"] = 0.0
    config["simulators"]["station_readers"].pop("script", None)
    config["simulators"]["station_readers"]["repeat"] = False
    config["sources"].pop("ward_sensor", None)
    return dumps(config)


def sample(pid: int, start: float) -> Sample:
    """CPU seconds and RSS of process `pid` now."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = 100  # /proc exists on Linux only, where sysconf says
    if sys.platform != "win32":
        ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return Sample(time.monotonic() - start, cpu, rss)


def measure(args: argparse.Namespace) -> tuple[list[Sample], float]:
    """Run the idle agent; its samples after `--settle` s, and its RSS when it was ready."""
    with tempfile.TemporaryDirectory(prefix="idle-") as tmp:
        config = Path(tmp) / "idle.toml"
        config.write_text(idle_config(Path(tmp) / "state"), encoding="utf-8")
        agent = ROOT / ".venv" / "bin" / "edge-agent"
        proc = subprocess.Popen([str(agent), "run", "-c", str(config)], stdout=subprocess.DEVNULL)
        try:
            start = time.monotonic()
            time.sleep(args.settle)  # start-up (imports, migrations, connects) is not idling
            ready = sample(proc.pid, start)
            samples = [ready]
            while samples[-1].seconds - ready.seconds < args.duration:
                time.sleep(args.sample)
                if proc.poll() is not None:
                    raise RuntimeError(f"the agent exited with {proc.returncode}")
                samples.append(sample(proc.pid, start))
                s = samples[-1]
                print(f"{s.seconds:6.0f} s  cpu {s.cpu_seconds:7.2f} s  rss {s.rss_mb:.0f} MB")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return samples, ready.rss_mb


def report(command: str, args: argparse.Namespace, samples: list[Sample]) -> str:
    """The Markdown section recorded in docs/benchmarks.md."""
    first, last = samples[0], samples[-1]
    cpu = 100 * (last.cpu_seconds - first.cpu_seconds) / (last.seconds - first.seconds)
    peak = max(s.rss_mb for s in samples)
    rss_ok = "pass" if peak <= TARGET_RSS_MB else "**FAIL**"
    cpu_ok = "pass" if cpu <= TARGET_CPU_PERCENT else "**FAIL**"
    return f"""{BEGIN}
## Idle agent

`config/demo.toml` without its traffic (no station-reader script, no synthetic sensor): its
RFID reader sources connected to silent simulated readers, and everything else the demo
starts (simulated platforms and their uplinks, the local API and dashboard), as `edge-agent run`.
After {args.settle:g} s of start-up, the process's CPU time (user + system, all threads) and RSS
are sampled every {args.sample:g} s for {args.duration:g} s.

* Command: `{command}`
* Date: {datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
* Machine: nproc {cpu_count()} ({_cpu_model()}), Python {sys.version.split()[0]}

| target | measured | result |
|---|---|---|
| CPU ≤ {TARGET_CPU_PERCENT:g} % of one core over {args.duration:g} s | {cpu:.2f} % | {cpu_ok} |
| RSS ≤ {TARGET_RSS_MB:g} MB | {first.rss_mb:.0f} MB at the start, {peak:.0f} MB peak | {rss_ok} |
{END}"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds measured (600)")
    parser.add_argument("--settle", type=float, default=15.0, help="start-up seconds (15)")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="Markdown to update")
    parser.add_argument("--no-record", action="store_true", help="print only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    samples, _ = measure(args)
    section = report(command_line("bench.idle", argv), args, samples)
    print(section)
    if not args.no_record:
        record(args.output, section, BEGIN, END)


if __name__ == "__main__":
    main()
