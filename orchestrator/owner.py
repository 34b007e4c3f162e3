"""Who acts on a run: recorded with each attempt and audit record, shown to whoever is refused a lock."""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class LockOwner:
    what: str  # "run", "resume", "mark-success", ... shown to whoever is refused
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    user: str = field(default_factory=getpass.getuser)

    @property
    def actor(self) -> str:
        return f"{self.user}@{self.host}"
