"""A real curation-server on loopback for the Python-driven tool tests: authentication on with a
fresh admin token, a temporary data directory, the port read from --port-file."""
import os, subprocess, sys, time


class LocalServer:
    def __init__(self, server_bin, tmp, admin_token):
        self.token_file = os.path.join(tmp, "admin-token")
        with open(self.token_file, "w") as f:
            f.write(admin_token + "\n")
        port_file = os.path.join(tmp, "port")
        self.log = os.path.join(tmp, "server.log")
        self.proc = subprocess.Popen(
            [server_bin, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(tmp, "db"),
             "--port-file", port_file, "--admin-token-file", self.token_file],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "w"))
        deadline = time.time() + 60
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if time.time() > deadline or self.proc.poll() is not None:
                sys.exit("FAIL: the server did not write its port file:\n" + open(self.log).read())
            time.sleep(0.1)
        self.address = "127.0.0.1:" + open(port_file).read().strip()

    def stop_cleanly(self):
        """SIGTERM; exits the test with FAIL unless the server stops with status 0."""
        self.proc.terminate()
        if self.proc.wait(timeout=60) != 0:
            sys.exit(f"FAIL: the server exited {self.proc.returncode} on SIGTERM:\n" +
                     open(self.log).read()[-4000:])
        self.proc = None

    def kill(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
