#!/usr/bin/env python3
"""check_counter_rate: a monitoring plugin that reports the rate of a growing counter.

A counter (bytes received by a network interface, requests served, ...) only means something
as a rate: how much it grew per second since the last check. The plugin keeps the last value
and its time in the State Manager between runs, exactly as an Opsview plugin does:

    run 1: no previous sample → store it, "OK - first sample ..." (exit 0)
    run 2: previous sample → rate = (value - previous) / (now - previous time), store the
           new sample, print the rate with perfdata, exit 0/1/2 against -w/-c

The counter is read from /proc/net/dev (``--interface lo [--direction rx|tx]``) or given on
the command line (``--counter 12345 --name requests``). The State Manager is found, as for
any plugnpy plugin, through OPSVIEW_STATE_MANAGER_HOST, _PORT and _NAMESPACE (and, for
HTTPS, OPSVIEW_STATE_MANAGER_CA_FILE, _CERT_FILE, _KEY_FILE).

    OPSVIEW_STATE_MANAGER_HOST=127.0.0.1 OPSVIEW_STATE_MANAGER_PORT=8184 \\
    OPSVIEW_STATE_MANAGER_NAMESPACE='PLUGIN#check_counter_rate' \\
        ./check_counter_rate.py --interface lo -w 1000000 -c 5000000

Output (Nagios plugin format: status line | perfdata; exit 0 OK, 1 WARNING, 2 CRITICAL,
3 UNKNOWN):

    COUNTER_RATE OK - lo rx_bytes: 1520.4/s over 300.002s | rate=1520.4;1000000;5000000 value=123456c
"""

import argparse
import sys
import time
from typing import List, Optional, Tuple

# With plugnpy this line was: from plugnpy.statemanager import StateManagerUtils
from statemanager import StateManagerStoreError, StateManagerUtils

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATUS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}


def read_interface(interface: str, direction: str, path: str = "/proc/net/dev") -> int:
    """The rx or tx byte counter of ``interface`` from /proc/net/dev."""
    with open(path, encoding="ascii") as f:
        lines = f.read().splitlines()[2:]  # two header lines
    for line in lines:
        name, _, fields = line.partition(":")
        if name.strip() == interface:
            values = fields.split()
            return int(values[0] if direction == "rx" else values[8])
    raise ValueError("no interface {!r} in {}".format(interface, path))


def fmt(number: float) -> str:
    """A short, exact-enough number for the status line and perfdata."""
    if abs(number) >= 1e15:
        return "{:.6g}".format(number)
    return "{:.3f}".format(number).rstrip("0").rstrip(".")


def evaluate(rate: float, warning: Optional[float], critical: Optional[float]) -> int:
    """The exit status for ``rate`` against the thresholds (above is bad)."""
    if critical is not None and rate > critical:
        return CRITICAL
    if warning is not None and rate > warning:
        return WARNING
    return OK


def check(args: argparse.Namespace, now: float) -> Tuple[int, str]:
    """Reads the counter, compares with the last sample, stores the new one."""
    if args.interface:
        label = "{} {}_bytes".format(args.interface, args.direction)
        value = read_interface(args.interface, args.direction)
    else:
        label = args.name
        value = args.counter
    key = "rate:{}".format(label)
    previous = StateManagerUtils.fetch_json(key)
    # The sample's own time is its timestamp: should two runs overlap, the older sample can
    # never replace the newer one (the server refuses it with a conflict).
    try:
        StateManagerUtils.store_json(key, {"value": value, "time": now}, args.ttl, timestamp=now)
    except StateManagerStoreError as ex:
        if ex.code != "conflict":
            raise
    thresholds = ";{};{}".format(
        "" if args.warning is None else fmt(args.warning),
        "" if args.critical is None else fmt(args.critical),
    )
    perf_value = "value={}c".format(value)
    if not (
        isinstance(previous, dict)
        and isinstance(previous.get("value"), (int, float))
        and isinstance(previous.get("time"), (int, float))
    ):
        return OK, "{}: first sample stored, rate from the next run | {}".format(label, perf_value)
    elapsed = now - float(previous["time"])
    delta = value - previous["value"]
    if elapsed <= 0:
        return UNKNOWN, "{}: no time passed since the last sample | {}".format(label, perf_value)
    if delta < 0:
        return OK, "{}: counter was reset, rate from the next run | {}".format(label, perf_value)
    rate = delta / elapsed
    status = evaluate(rate, args.warning, args.critical)
    return status, "{}: {}/s over {}s | rate={}{} {}".format(
        label, fmt(rate), fmt(elapsed), fmt(rate), thresholds, perf_value
    )


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--interface", help="a network interface in /proc/net/dev")
    source.add_argument("--counter", type=int, help="the counter's current value")
    parser.add_argument("--direction", choices=("rx", "tx"), default="rx")
    parser.add_argument("--name", default="counter", help="the counter's name (with --counter)")
    parser.add_argument("-w", "--warning", type=float, help="warn above this rate (per second)")
    parser.add_argument("-c", "--critical", type=float, help="critical above this rate")
    parser.add_argument("--ttl", type=int, default=3600,
                        help="seconds to keep the sample (longer than the check interval)")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the check, prints one status line, returns the exit code."""
    args = parse_args(argv)
    try:
        status, text = check(args, time.time())
    except StateManagerStoreError as ex:
        status, text = UNKNOWN, "state manager: {}".format(ex)
    except (OSError, ValueError) as ex:
        status, text = UNKNOWN, str(ex)
    print("COUNTER_RATE {} - {}".format(STATUS[status], text))
    return status


if __name__ == "__main__":
    sys.exit(main())
