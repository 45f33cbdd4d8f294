"""The package as pip installed it: where it is imported from, its metadata and files, and the
build backend's wheel and sdist (offline, reproducible, with valid RECORD hashes).

Run by PythonClientTest with the venv's python that PythonClientInstall installed into;
$CURATION_CLIENT_SOURCE is client/python of the checkout it was installed from."""
import base64
import csv
import hashlib
import importlib.metadata
import importlib.util
import io
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import unittest
import zipfile

import curation_client

SOURCE = os.environ.get("CURATION_CLIENT_SOURCE") or os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))


def load_backend():
    # By path, so that neither client/python nor its build_backend/ lands on sys.path.
    path = os.path.join(SOURCE, "build_backend", "curation_build.py")
    spec = importlib.util.spec_from_file_location("curation_build_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_record(test, wheel_path):
    """Every file of the wheel is in its RECORD with the right sha256 and size."""
    with zipfile.ZipFile(wheel_path) as z:
        names = set(z.namelist())
        record_name = next(n for n in names if n.endswith(".dist-info/RECORD"))
        rows = list(csv.reader(io.StringIO(z.read(record_name).decode())))
        recorded = {row[0] for row in rows}
        test.assertEqual(recorded, names)
        for path, digest, size in rows:
            if path == record_name:
                test.assertEqual((digest, size), ("", ""))
                continue
            data = z.read(path)
            want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            test.assertEqual(digest, "sha256=" + want.decode(), path)
            test.assertEqual(int(size), len(data), path)
        return names


class InstalledPackageTest(unittest.TestCase):
    def test_imported_from_the_venv_not_the_source_tree(self):
        self.assertNotEqual(sys.prefix, sys.base_prefix, "not running in a venv")
        where = os.path.realpath(curation_client.__file__)
        purelib = os.path.realpath(sysconfig.get_paths()["purelib"])
        self.assertTrue(where.startswith(purelib + os.sep), f"{where} is not under {purelib}")
        self.assertFalse(where.startswith(os.path.realpath(SOURCE) + os.sep), where)
        # The generated stubs live inside the package: no top-level `curation` package.
        self.assertIsNone(importlib.util.find_spec("curation"))
        self.assertTrue(curation_client.pb.__name__.startswith("curation_client._proto."))
        self.assertEqual(curation_client.pb.Selection.__module__,
                         "curation_client._proto.curation_pb2")

    def test_version(self):
        self.assertEqual(importlib.metadata.version("curation-client"),
                         curation_client.__version__)
        if os.environ.get("CURATION_PROJECT_VERSION"):
            self.assertEqual(curation_client.__version__, os.environ["CURATION_PROJECT_VERSION"])

    def test_installed_files(self):
        files = {str(f) for f in importlib.metadata.files("curation-client")}
        for expected in ("curation_client/py.typed", "curation_client/_proto/curation_pb2.py",
                         "curation_client/_proto/curation_pb2.pyi",
                         "curation_client/_proto/curation_pb2_grpc.py",
                         "curation_client/_proto/admin_pb2.py"):
            self.assertIn(expected, files)
        # Nothing but the package and its metadata: no tests, no build backend.
        self.assertEqual([f for f in files
                          if not f.startswith(("curation_client/", "curation_client-"))], [])
        requires = importlib.metadata.requires("curation-client")
        self.assertIn("grpcio>=1.51", requires)
        self.assertIn("protobuf>=4.21", requires)


class BackendTest(unittest.TestCase):
    """The in-tree backend's artefacts, built here offline into a temporary directory."""

    @classmethod
    def setUpClass(cls):
        cls.backend = load_backend()
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def build(self, hook, name):
        out = os.path.join(self.tmp.name, name)
        os.makedirs(out)
        return os.path.join(out, getattr(self.backend, hook)(out))

    def test_wheel_is_reproducible_and_recorded(self):
        first, second = self.build("build_wheel", "w1"), self.build("build_wheel", "w2")
        self.assertEqual(os.path.basename(first),
                         f"curation_client-{curation_client.__version__}-py3-none-any.whl")
        with open(first, "rb") as a, open(second, "rb") as b:
            self.assertEqual(a.read(), b.read())
        names = check_record(self, first)
        self.assertIn("curation_client/py.typed", names)
        self.assertFalse([n for n in names if n.startswith("curation") and
                          not n.startswith(("curation_client/", "curation_client-"))])
        with zipfile.ZipFile(first) as z:
            grpc_stub = z.read("curation_client/_proto/curation_pb2_grpc.py").decode()
        self.assertIn("from curation_client._proto import curation_pb2", grpc_stub)
        self.assertNotIn("from curation.v1", grpc_stub)

    def test_sdist_builds_the_same_wheel_offline(self):
        sdist = self.build("build_sdist", "sdist")
        with tarfile.open(sdist) as t:
            members = t.getnames()
        base = os.path.basename(sdist)[:-len(".tar.gz")]
        for expected in ("PKG-INFO", "pyproject.toml", "build_backend/curation_build.py",
                         "proto/curation/v1/curation.proto", "curation_client/py.typed"):
            self.assertIn(f"{base}/{expected}", members)
        self.assertFalse([m for m in members if "/_proto/" in m or m.endswith(".pyc")])
        # pip builds a wheel from the sdist with no index: the backend needs nothing.
        out = os.path.join(self.tmp.name, "from-sdist")
        run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--isolated", "--no-index",
                              "--no-deps", "--no-cache-dir", "--disable-pip-version-check",
                              "-w", out, sdist], capture_output=True, text=True, timeout=300)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        [wheel] = os.listdir(out)
        direct = self.build("build_wheel", "direct")
        self.assertEqual(check_record(self, os.path.join(out, wheel)),
                         check_record(self, direct))

    def test_a_missing_protoc_is_named(self):
        saved = os.environ.get("PROTOC")
        os.environ["PROTOC"] = os.path.join(self.tmp.name, "no-such-protoc")
        try:
            with self.assertRaises(self.backend.BuildError) as missing:
                self.build("build_wheel", "no-protoc")
            self.assertIn("protobuf-compiler", str(missing.exception))
        finally:
            if saved is None:
                del os.environ["PROTOC"]
            else:
                os.environ["PROTOC"] = saved


class TypingTest(unittest.TestCase):
    """py.typed and the annotations, as mypy (Debian's, on the system path this venv sees)
    reads the installed package: the package checks clean with every def annotated, a
    typical script checks clean, and the marked mistakes in usage_bad.py are each caught."""

    def test_mypy(self):
        here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "typing")
        if importlib.util.find_spec("mypy") is None:
            self.fail("mypy is missing: scripts/deps installs Debian's mypy")
        run = subprocess.run(
            [sys.executable, "-m", "mypy", "--config-file", os.path.join(here, "mypy.ini"),
             "--cache-dir", os.devnull, "-p", "curation_client", "-m", "usage_ok",
             "-m", "usage_bad"], env=dict(os.environ, MYPYPATH=here), capture_output=True,
            text=True, timeout=300)
        reported = set()
        for line in run.stdout.splitlines():
            match = re.match(r"^(.*?):(\d+): error: .*\[([\w-]+)\]$", line)
            if match:
                reported.add((os.path.basename(match.group(1)), int(match.group(2)),
                              match.group(3)))
            elif ": error:" in line:
                reported.add((line, 0, ""))
        expected = set()
        with open(os.path.join(here, "usage_bad.py"), encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                match = re.search(r"# E: ([\w-]+)$", line)
                if match:
                    expected.add(("usage_bad.py", number, match.group(1)))
        self.assertGreaterEqual(len(expected), 5)
        self.assertEqual(reported, expected, run.stdout + run.stderr)


if __name__ == "__main__":
    unittest.main()
