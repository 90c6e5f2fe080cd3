"""The example plugin (examples/check_counter_rate.py), run as Opsview runs a plugin: a new
process each time, the State Manager named by the environment."""

import os
import subprocess
import sys
import unittest
from typing import Dict, Optional, Tuple

from support import (
    CA_FILE,
    CERT_FILE,
    HOST,
    HTTPS_PORT,
    KEY_FILE,
    REPO,
    closed_port,
    needs_https,
    needs_server,
    subprocess_env,
    unique_key,
)

PLUGIN = str(REPO / "examples" / "check_counter_rate.py")


def run(args: Tuple[str, ...], env: Optional[Dict[str, str]] = None) -> Tuple[int, str]:
    """Runs the plugin; returns its exit code and its single output line."""
    out = subprocess.run(
        [sys.executable, PLUGIN] + list(args),
        env=subprocess_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=120,
    )
    text = out.stdout.decode()
    assert out.stderr == b"", out.stderr.decode()
    assert text.count("\n") == 1, text
    return out.returncode, text.strip()


@needs_server
class ExamplePlugin(unittest.TestCase):
    def setUp(self) -> None:
        self.name = unique_key(self)

    def counter(self, value: int, *extra: str) -> Tuple[int, str]:
        return run(("--counter", str(value), "--name", self.name) + extra)

    def test_first_run_stores_second_run_prints_a_rate(self) -> None:
        code, line = self.counter(100)
        self.assertEqual(code, 0, line)
        self.assertTrue(line.startswith("COUNTER_RATE OK - "), line)
        self.assertIn("first sample stored", line)
        self.assertIn("| value=100c", line)
        code, line = self.counter(250, "-w", "1e12", "-c", "2e12")
        self.assertEqual(code, 0, line)
        self.assertRegex(
            line,
            r"^COUNTER_RATE OK - \S+: [0-9.]+/s over [0-9.]+s"
            r" \| rate=[0-9.]+;1000000000000;2000000000000 value=250c$",
        )
        rate = float(line.split("| rate=")[1].split(";")[0])
        self.assertGreater(rate, 0)

    def test_thresholds(self) -> None:
        self.counter(0)
        code, line = self.counter(1000, "-w", "0.001")
        self.assertEqual(code, 1, line)
        self.assertTrue(line.startswith("COUNTER_RATE WARNING - "), line)
        code, line = self.counter(2000, "-w", "0.001", "-c", "0.002")
        self.assertEqual(code, 2, line)
        self.assertTrue(line.startswith("COUNTER_RATE CRITICAL - "), line)

    def test_a_reset_counter(self) -> None:
        self.counter(5000)
        code, line = self.counter(10)
        self.assertEqual(code, 0, line)
        self.assertIn("counter was reset", line)
        code, line = self.counter(20)
        self.assertIn("/s over", line)

    @unittest.skipUnless(os.path.exists("/proc/net/dev"), "needs /proc/net/dev")
    def test_network_interface(self) -> None:
        for direction in ("rx", "tx"):
            code, line = run(("--interface", "lo", "--direction", direction))
            self.assertIn(code, (0,), line)
            code, line = run(("--interface", "lo", "--direction", direction))
            self.assertEqual(code, 0, line)
            self.assertIn("lo {}_bytes: ".format(direction), line)
            self.assertIn("/s over", line)
            self.assertIn("| rate=", line)

    def test_unknown_interface_is_unknown(self) -> None:
        code, line = run(("--interface", "no-such-if0"))
        self.assertEqual(code, 3, line)
        self.assertTrue(line.startswith("COUNTER_RATE UNKNOWN - "), line)

    def test_no_state_manager_is_unknown(self) -> None:
        code, line = run(("--counter", "1", "--name", self.name),
                         {"OPSVIEW_STATE_MANAGER_PORT": str(closed_port())})
        self.assertEqual(code, 3, line)
        self.assertIn("UNKNOWN - state manager: Failed to connect to state manager", line)


@needs_https
class ExamplePluginOverHttps(unittest.TestCase):
    def test_twice_over_https(self) -> None:
        env = {
            "OPSVIEW_STATE_MANAGER_HOST": HOST or "",
            "OPSVIEW_STATE_MANAGER_PORT": HTTPS_PORT or "",
            "OPSVIEW_STATE_MANAGER_CA_FILE": CA_FILE or "",
            "OPSVIEW_STATE_MANAGER_CERT_FILE": CERT_FILE or "",
            "OPSVIEW_STATE_MANAGER_KEY_FILE": KEY_FILE or "",
        }
        name = unique_key(self)
        code, line = run(("--counter", "7", "--name", name), env)
        self.assertEqual((code, "first sample stored" in line), (0, True), line)
        code, line = run(("--counter", "9", "--name", name), env)
        self.assertEqual(code, 0, line)
        self.assertIn("/s over", line)


if __name__ == "__main__":
    unittest.main(verbosity=2)
