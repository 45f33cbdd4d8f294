"""Runs the real curation-server from the build tree on a loopback port for the tests."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

SERVER_BIN = os.environ.get("CURATION_SERVER_BIN", "")
CLI_BIN = os.environ.get("CURATION_CLI_BIN", "")
TEST_DATA = os.environ.get("CURATION_TEST_DATA", "")


class Server:
    """curation-server with auth on (an admin token file) and, optionally, TLS."""

    def __init__(self, tls=False):
        if not os.path.exists(SERVER_BIN):
            raise RuntimeError("set CURATION_SERVER_BIN to the built curation-server")
        self.dir = tempfile.mkdtemp(prefix="curation-py-")
        self.admin_token = os.urandom(16).hex()
        token_file = os.path.join(self.dir, "admin-token")
        with open(token_file, "w") as f:
            f.write(self.admin_token)
        port_file = os.path.join(self.dir, "port")
        args = [SERVER_BIN, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(self.dir, "db"),
                "--port-file", port_file, "--admin-token-file", token_file,
                "--grace-period-seconds", "2"]
        self.ca = None
        if tls:
            self.ca = self._make_certificates()
            args += ["--tls-cert", os.path.join(self.dir, "server.crt"),
                     "--tls-key", os.path.join(self.dir, "server.key")]
        self.log = open(os.path.join(self.dir, "server.log"), "w")
        self.process = subprocess.Popen(args, stderr=self.log)
        deadline = time.time() + 60
        while not os.path.exists(port_file):
            if self.process.poll() is not None or time.time() > deadline:
                raise RuntimeError("curation-server did not start: " + self.log_text())
            time.sleep(0.05)
        with open(port_file) as f:
            self.address = "127.0.0.1:" + f.read().strip()

    def _make_certificates(self):
        def openssl(*args):
            subprocess.run(["openssl", *args], cwd=self.dir, check=True, capture_output=True)

        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                "/CN=test CA", "-keyout", "ca.key", "-out", "ca.crt")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout",
                "server.key", "-out", "server.csr")
        with open(os.path.join(self.dir, "san.ext"), "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt")
        return os.path.join(self.dir, "ca.crt")

    def log_text(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()[-3000:]

    def cli(self, *args, token=None):
        command = [CLI_BIN, "--server", self.address]
        if token:
            command += ["--token", token]
        return subprocess.run(command + list(args), capture_output=True, text=True, check=True)

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return code


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
