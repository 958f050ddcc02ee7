"""One boot of the emulated system of targets/system.py: the QEMU process, its serial console
(a log file the rig watches), the control channel (a shell on the virtio port `amc.ctl`) and
host folders shared into the guest at the same paths (virtio-9p), so that a command can name the
host's files as they are.

A power cut is `kill -9` of QEMU: what the guest had not written to its disk is lost, and the
next boot finds the file system as the cut left it (ext4 replays its journal)."""

from __future__ import annotations

import re
import select
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from amc.common.errors import AmcError
from amc.targets.qemu import need_tool
from amc.targets.system import CONTROL_PORT, SystemImage, disk_options, machine_options

CONSOLE = "console=ttyAMA0 root=/dev/vda rw loglevel=4"
BOOT_TIMEOUT = 600
"""Seconds from power-on to the shell on the control channel (a boot takes about 35 s on 2 cores)."""
SEND_TIMEOUT = 60
COLOUR = re.compile(r"\x1b\[[0-9;]*m")


class BootedSystem:
    """`with BootedSystem(image, rootfs, log_dir, shares) as vm:` boots (`vm.start()` +
    `vm.connect()` to wait for the shell); leaving the block powers it off (or kills QEMU)."""

    def __init__(self, image: SystemImage, rootfs: Path, log_dir: Path, shares: tuple[Path, ...] = (),
                 memory_mb: int = 1024, cpus: int = 2):
        self.image, self.rootfs, self.log_dir = image, Path(rootfs), Path(log_dir)
        self.shares = tuple(dict.fromkeys(Path(s).resolve() for s in shares))
        self.memory_mb, self.cpus = memory_mb, cpus
        self.process: subprocess.Popen | None = None
        self.boots = 0
        self.channel: socket.socket | None = None
        self.pending = b""
        self.commands = 0
        self.socket_dir = Path(tempfile.mkdtemp(prefix="amc-vm-"))   # short: a socket path has 108 bytes
        self.started = 0.0

    # ---- power ----------------------------------------------------------------------------------
    def start(self, append: str = "") -> None:
        """Power on (a new QEMU process on the same disk)."""
        if self.running:
            raise AmcError("the emulated system is already running")
        qemu = need_tool("qemu-system-aarch64", "qemu-system-arm")
        self.boots += 1
        self.console_log = self.log_dir / f"console-{self.boots}.log"
        sock = self.socket_dir / "ctl"
        sock.unlink(missing_ok=True)
        shares = []
        for index, folder in enumerate(self.shares):
            shares += ["-fsdev", f"local,id=fs{index},path={folder},security_model=none",
                       "-device", f"virtio-9p-device,fsdev=fs{index},mount_tag=host{index}"]
        cmd = [qemu, *machine_options(self.memory_mb, self.cpus), "-kernel", str(self.image.kernel),
               "-initrd", str(self.image.initrd), "-append", f"{CONSOLE} {append}".strip(),
               *disk_options(self.rootfs), "-device", "virtio-serial-device",
               "-chardev", f"socket,id=ctl,path={sock},server=on,wait=off",
               "-device", f"virtserialport,chardev=ctl,name={CONTROL_PORT}",
               "-chardev", f"file,id=con,path={self.console_log}", "-serial", "chardev:con",
               *shares, "-no-reboot"]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.qemu_log = open(self.log_dir / f"qemu-{self.boots}.log", "wb")
        self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.qemu_log, stderr=subprocess.STDOUT)
        self.started = time.monotonic()
        self.channel, self.pending = None, b""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def power_cut(self) -> None:
        """Kill QEMU at once: the guest's unwritten data is lost, as in a power cut."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self._closed()

    def power_off(self, timeout: float = 180) -> None:
        """A clean shutdown (systemctl poweroff); QEMU is killed if it does not stop in time."""
        if self.running:
            try:
                self.send("systemctl poweroff")
            except (AmcError, OSError):
                pass
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._closed()

    def reboot(self, append: str = "", timeout: float = BOOT_TIMEOUT) -> float:
        """Shut down cleanly and boot again; returns the seconds to the shell."""
        self.power_off()
        self.start(append)
        return self.connect(timeout)

    def _closed(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if getattr(self, "qemu_log", None):
            self.qemu_log.close()

    def __enter__(self) -> "BootedSystem":
        return self

    def __exit__(self, *exc) -> None:
        self.power_off(timeout=60 if exc[0] is None else 5)
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    # ---- the serial console -------------------------------------------------------------------------
    def console(self) -> str:
        """This boot's console so far, without the terminal's colour codes (systemd's status lines have them)."""
        text = self.console_log.read_text(errors="replace") if self.console_log.exists() else ""
        return COLOUR.sub("", text)

    def wait_console(self, pattern: str, timeout: float) -> re.Match:
        """The first match of `pattern` on this boot's console, polled every 20 ms."""
        regex, deadline = re.compile(pattern), time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = regex.search(self.console())
            if found:
                return found
            if not self.running:
                raise AmcError(f"the emulated system stopped before '{pattern}' (console: {self.console_log})")
            time.sleep(0.02)
        raise AmcError(f"no '{pattern}' on the emulated system's console in {timeout:.0f} s ({self.console_log})")

    # ---- the control channel --------------------------------------------------------------------------
    def connect(self, timeout: float = BOOT_TIMEOUT) -> float:
        """Wait for the guest's shell on the control channel; mount the shared folders. Returns the
        seconds from power-on."""
        deadline = time.monotonic() + timeout
        sock = self.socket_dir / "ctl"
        while self.channel is None:
            if not self.running:
                raise AmcError(f"QEMU exited (status {self.process.returncode}): see {self.qemu_log.name} "
                               f"and {self.console_log}")
            if time.monotonic() > deadline:
                raise AmcError(f"the emulated system did not start in {timeout:.0f} s (console: {self.console_log})")
            try:
                channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                channel.connect(str(sock))
                channel.settimeout(SEND_TIMEOUT)     # a guest that stopped reading is an error, never a hang
                self.channel = channel
            except OSError:
                time.sleep(0.2)
        token = f"__amc_ready_{self.boots}__"
        while True:         # lines sent before the guest's shell opened the port wait in QEMU
            self.send(f"echo {token}")
            try:
                self._read_until(re.compile(re.escape(token.encode()) + rb"\n"), min(2.0, max(0.1, deadline - time.monotonic())))
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise AmcError(f"no shell on the control channel in {timeout:.0f} s (console: {self.console_log})") from None
        self.sh("true")     # drains the extra ready lines
        seconds = time.monotonic() - self.started
        for index, folder in enumerate(self.shares):
            self.sh(f"mkdir -p '{folder}' && mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 host{index} '{folder}'")
        return seconds

    def send(self, line: str) -> None:
        if self.channel is None:
            raise AmcError("the emulated system's control channel is not connected")
        try:
            self.channel.sendall(line.encode() + b"\n")
        except TimeoutError:
            raise AmcError(f"the emulated system reads nothing on its control channel (console: {self.console_log})") \
                from None

    def sh(self, command: str, timeout: float = 600, check: bool = True) -> str:
        """Run `command` in the guest's shell (stdin empty, stderr into stdout); its output. With
        `check`, a non-zero exit status is an AmcError naming the command."""
        status, output = self.run(command, timeout)
        if check and status != 0:
            last = output.strip().splitlines()[-1:] or [""]
            raise AmcError(f"on the emulated system: `{command[:120]}` exited {status}: {last[0][:200]}")
        return output

    def run(self, command: str, timeout: float = 600) -> tuple[int, str]:
        self.commands += 1
        token = f"__amc_rc_{self.boots}_{self.commands}__"
        self.send(f"( {command}\n) </dev/null 2>&1; echo \"{token}=$?\"")
        try:
            text = self._read_until(re.compile(re.escape(token.encode()) + rb"=(\d+)\n"), timeout)
        except TimeoutError:
            raise AmcError(f"on the emulated system: `{command[:120]}` took more than {timeout:.0f} s") from None
        match = re.search(re.escape(token) + r"=(\d+)\n", text)
        return int(match.group(1)), text[:match.start()]

    def _read_until(self, regex: re.Pattern[bytes], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.pending)
            if match:
                text, self.pending = self.pending[:match.end()], self.pending[match.end():]
                return text.decode(errors="replace")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([self.channel], [], [], min(left, 0.5))
            if ready:
                chunk = self.channel.recv(65536)
                if not chunk:
                    raise AmcError(f"the emulated system closed its control channel (console: {self.console_log})")
                self.pending += chunk
            elif not self.running:
                raise AmcError(f"the emulated system stopped (console: {self.console_log})")
