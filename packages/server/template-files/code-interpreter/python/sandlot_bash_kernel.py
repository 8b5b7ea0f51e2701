"""A Jupyter kernel for bash (Debian packages no bash kernel): one bash per kernel, on a terminal.

Each cell is written to a file and sourced by that bash, so `cd`, `export`, functions and variables
stay for the next cell. Output (stdout and stderr, as a terminal merges them) streams as it comes;
a non-zero exit status is the cell's error. An interrupt sends Ctrl-C to what runs.
"""
import os
import re
import secrets
import signal
import tempfile

import pexpect
from ipykernel.kernelapp import IPKernelApp
from ipykernel.kernelbase import Kernel


class BashKernel(Kernel):
    implementation = "sandlot_bash_kernel"
    implementation_version = "1.0"
    language = "bash"
    language_version = "5"
    language_info = {"name": "bash", "mimetype": "text/x-sh", "file_extension": ".sh", "codemirror_mode": "shell"}
    banner = "Bash"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._token = secrets.token_hex(8)
        self._prompt = re.compile(f"\x01{self._token}:(\\d+)\x02")
        self._start_bash()

    def _start_bash(self):
        self._bash = pexpect.spawn("bash", ["--noprofile", "--norc", "--noediting"], echo=False, encoding="utf-8", codec_errors="replace", env={**os.environ, "PAGER": "cat", "TERM": "dumb"})
        self._bash.sendline(f"PS1='\x01{self._token}:$?\x02'; PS2=''; PROMPT_COMMAND=''; unset HISTFILE")
        self._read_until_prompt(lambda _text: None)

    def _read_until_prompt(self, emit):
        """Streams output to `emit` until the next prompt; returns the exit status it shows."""
        buffer = ""
        keep = len(self._token) + 16  # what could be the start of a prompt stays in the buffer
        while True:
            try:
                buffer += self._bash.read_nonblocking(65536, timeout=0.1)
            except pexpect.TIMEOUT:
                pass
            except pexpect.EOF:
                emit(buffer)
                raise
            m = self._prompt.search(buffer)
            if m:
                emit(buffer[: m.start()])
                return int(m.group(1))
            if len(buffer) > keep:
                emit(buffer[:-keep])
                buffer = buffer[-keep:]

    def do_execute(self, code, silent, store_history=True, user_expressions=None, allow_stdin=False, *, cell_id=None):
        def emit(text):
            if text and not silent:
                self.send_response(self.iopub_socket, "stream", {"name": "stdout", "text": text.replace("\r\n", "\n")})

        with tempfile.NamedTemporaryFile("w", prefix="sandlot-cell-", suffix=".sh", delete=False) as f:
            f.write(code + "\n")
        # ipykernel ignores SIGINT (an interrupt request sends it): while a cell runs, it interrupts.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            self._bash.sendline(f"source {f.name}")
            try:
                status = self._read_until_prompt(emit)
            except KeyboardInterrupt:
                self._bash.sendintr()
                self._read_until_prompt(emit)
                return self._error("KeyboardInterrupt", "interrupted", silent)
            except pexpect.EOF:
                # The cell ended the shell (`exit`): its status is the cell's, and a new shell takes over.
                self._bash.close()
                status = self._bash.exitstatus if self._bash.exitstatus is not None else 128 + (self._bash.signalstatus or 0)
                self._start_bash()
        finally:
            signal.signal(signal.SIGINT, previous)
            os.unlink(f.name)
        if status != 0:
            return self._error("Error", str(status), silent)
        return {"status": "ok", "execution_count": self.execution_count, "payload": [], "user_expressions": {}}

    def _error(self, name, value, silent):
        content = {"ename": name, "evalue": value, "traceback": [f"{name}: {value}"]}
        if not silent:
            self.send_response(self.iopub_socket, "error", content)
        return {"status": "error", "execution_count": self.execution_count, **content}


if __name__ == "__main__":
    IPKernelApp.launch_instance(kernel_class=BashKernel)
