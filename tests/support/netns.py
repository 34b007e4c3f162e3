"""Hosts a test can cut off: Linux network namespaces joined by a bridge, torn down after.

Each host is a namespace with one veth link to a bridge that lives in a switch namespace of its own,
so nothing is added to the machine's own network: traffic only flows between addresses the test
created. Cutting a host sets its link down on the switch side: packets are dropped, nobody gets a
reset, connections hang as they do when a cable is pulled or a host vanishes. Needs root and `ip`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from dataclasses import dataclass

SUBNET = "10.213.0"  # private, and only inside the namespaces below


def unavailable() -> str | None:
    """Why namespaces cannot be made here (None if they can)."""
    if os.geteuid() != 0:
        return "network namespace tests need root"
    if shutil.which("ip") is None:
        return "network namespace tests need `ip` (iproute2)"
    probe = f"exprobe{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create network namespaces here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@dataclass(frozen=True)
class Host:
    name: str  # its namespace
    address: str
    link: str  # its link's end on the switch

    def prefix(self) -> list[str]:
        """Run a command on this host: ``[*host.prefix(), argv...]``."""
        return ["ip", "netns", "exec", self.name]


class Network:
    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:5]
        self.switch = f"ex{self.tag}sw"
        self.hosts: list[Host] = []
        self._ip("netns", "add", self.switch)
        self._ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        self._ip("-n", self.switch, "link", "set", "br0", "up")

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True)

    def host(self, role: str) -> Host:
        n = len(self.hosts) + 1
        host = Host(f"ex{self.tag}{role}", f"{SUBNET}.{n}", f"s{self.tag}{n}")
        inside = f"h{self.tag}{n}"
        self._ip("netns", "add", host.name)
        self._ip("link", "add", inside, "type", "veth", "peer", "name", host.link)
        self._ip("link", "set", inside, "netns", host.name)
        self._ip("link", "set", host.link, "netns", self.switch)
        self._ip("-n", self.switch, "link", "set", host.link, "master", "br0", "up")
        self._ip("-n", host.name, "link", "set", "lo", "up")
        self._ip("-n", host.name, "link", "set", inside, "name", "eth0")
        self._ip("-n", host.name, "addr", "add", f"{host.address}/24", "dev", "eth0")
        self._ip("-n", host.name, "link", "set", "eth0", "up")
        self.hosts.append(host)
        return host

    def cut(self, host: Host) -> None:
        self._ip("-n", self.switch, "link", "set", host.link, "down")

    def heal(self, host: Host) -> None:
        self._ip("-n", self.switch, "link", "set", host.link, "up")

    def close(self) -> None:
        """Kill whatever still runs on the hosts (a job a stopped worker left behind, in a session of
        its own), then delete every namespace; their links go with them."""
        for name in [h.name for h in self.hosts] + [self.switch]:
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout
            for pid in pids.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
