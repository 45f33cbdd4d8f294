"""The PEP 517 / PEP 660 build backend of curation-client, with no dependencies.

Why in-tree: pip builds a package in an isolated environment into which it installs the
backend's requirements from an index; this backend requires nothing, so `pip install
./client/python` works offline, in a fresh venv, with no flag. setuptools would have to be
downloaded into that environment (or the caller would need --no-build-isolation).

The curation.v1 stubs are generated at build time, never committed, with protoc and
grpc_python_plugin (Debian's protobuf-compiler and protobuf-compiler-grpc, the ones the C++
build uses; $PROTOC and $GRPC_PYTHON_PLUGIN override PATH) from proto/ of the repository
(client/python/../../proto) or of the sdist (proto/). They land in curation_client/_proto/,
their `from curation.v1 import ...` rewritten to `from curation_client._proto import ...`, so
that the package does not add a top-level `curation` package or touch sys.path. protoc also
writes .pyi stubs of the messages, for type checkers.
"""
import base64
import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import tomllib
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "curation_client"
GENERATED = "_proto"  # curation_client/_proto: generated, never committed
PROTOS = ("curation/v1/curation.proto", "curation/v1/admin.proto")
# What the sdist carries besides the package: enough to build the wheel again.
SDIST_EXTRA = ("pyproject.toml", "build_backend/curation_build.py", "tests", "examples")


class BuildError(RuntimeError):
    pass


# ---------------------------------------------------------------------------------------------
# Metadata


def _project():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    with open(os.path.join(ROOT, PACKAGE, "_version.py"), encoding="utf-8") as f:
        match = re.search(r'^__version__ = "([^"]+)"$', f.read(), re.M)
    if not match:
        raise BuildError(f"{PACKAGE}/_version.py has no __version__ = \"...\" line")
    project["version"] = match.group(1)
    return project


def _dist_name(project):
    # The file name form of the project name (PEP 427 / PEP 625).
    return re.sub(r"[-_.]+", "_", project["name"]).lower()


def _metadata(project):
    lines = ["Metadata-Version: 2.1", f"Name: {project['name']}",
             f"Version: {project['version']}", f"Summary: {project.get('description', '')}"]
    if "requires-python" in project:
        lines.append(f"Requires-Python: {project['requires-python']}")
    if "license" in project:
        lines.append(f"License: {project['license'].get('text', '')}")
    lines += [f"Requires-Dist: {d}" for d in project.get("dependencies", [])]
    for extra, requirements in project.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        lines += [f'Requires-Dist: {r}; extra == "{extra}"' for r in requirements]
    return "\n".join(lines) + "\n"


def _dist_info(project):
    """(name, {file name: bytes}) of the .dist-info directory, RECORD aside."""
    name = f"{_dist_name(project)}-{project['version']}.dist-info"
    wheel = ("Wheel-Version: 1.0\nGenerator: curation_build\nRoot-Is-Purelib: true\n"
             "Tag: py3-none-any\n")
    return name, {"METADATA": _metadata(project).encode(), "WHEEL": wheel.encode()}


# ---------------------------------------------------------------------------------------------
# The generated stubs


def _proto_dir():
    for candidate in (os.path.join(ROOT, "proto"), os.path.join(ROOT, "..", "..", "proto")):
        if all(os.path.isfile(os.path.join(candidate, p)) for p in PROTOS):
            return os.path.normpath(candidate)
    raise BuildError(f"the curation.v1 protos ({', '.join(PROTOS)}) are neither in "
                     f"{ROOT}/proto (an sdist) nor in {ROOT}/../../proto (the repository)")


def _tool(variable, name):
    path = os.environ.get(variable) or shutil.which(name)
    if not path or not os.access(path, os.X_OK):
        raise BuildError(f"curation-client generates its gRPC stubs at build time and needs "
                         f"{name} (Debian: protobuf-compiler, protobuf-compiler-grpc); put it "
                         f"on PATH or set ${variable}")
    return path


_IMPORT = re.compile(r"^(from )curation\.v1( import )", re.M)
# The module name protoc gives the builder (it becomes the messages' __module__).
_MODULE = re.compile(r"(['\"])curation\.v1\.(\w+_pb2)\1")
_LEFT_OVER = re.compile(r"^\s*(from|import) curation\b", re.M)


def _rewrite(text):
    text = _IMPORT.sub(rf"\1{PACKAGE}.{GENERATED}\2", text)
    text = _MODULE.sub(rf"\1{PACKAGE}.{GENERATED}.\2\1", text)
    if _LEFT_OVER.search(text):
        raise BuildError("a generated stub still imports the top-level curation package")
    return text


def _generate():
    """{file name: bytes} of curation_client/_proto/."""
    protoc = _tool("PROTOC", "protoc")
    plugin = _tool("GRPC_PYTHON_PLUGIN", "grpc_python_plugin")
    with tempfile.TemporaryDirectory(prefix="curation-stubs-") as out:
        command = [protoc, f"--proto_path={_proto_dir()}", f"--python_out={out}",
                   f"--pyi_out={out}", f"--grpc_python_out={out}",
                   f"--plugin=protoc-gen-grpc_python={plugin}", *PROTOS]
        run = subprocess.run(command, capture_output=True, text=True)
        if run.returncode != 0:
            raise BuildError(f"{' '.join(command)} failed:\n{run.stderr}")
        generated = os.path.join(out, "curation", "v1")
        files = {"__init__.py": b'"""curation.v1, generated from proto/ at build time."""\n'}
        for name in sorted(os.listdir(generated)):
            with open(os.path.join(generated, name), encoding="utf-8") as f:
                files[name] = _rewrite(f.read()).encode()
    expected = {f"{os.path.basename(p)[:-6]}{s}" for p in PROTOS
                for s in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")}
    if not expected <= set(files):
        raise BuildError(f"protoc wrote {sorted(files)}, not {sorted(expected)}")
    return files


# ---------------------------------------------------------------------------------------------
# Files


def _package_files():
    """{path in the wheel: path on disk} of the package's own (committed) files."""
    files = {}
    top = os.path.join(ROOT, PACKAGE)
    for directory, subdirs, names in os.walk(top):
        relative = os.path.relpath(directory, ROOT)
        subdirs[:] = sorted(d for d in subdirs
                            if d != "__pycache__" and os.path.join(relative, d) !=
                            os.path.join(PACKAGE, GENERATED))
        for name in sorted(names):
            if not name.endswith((".pyc", ".pyo")):
                files[os.path.join(relative, name).replace(os.sep, "/")] = \
                    os.path.join(directory, name)
    return files


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def _write_wheel(directory, project, contents):
    """Writes the wheel of contents ({path: bytes}) plus its dist-info; returns its name."""
    info, info_files = _dist_info(project)
    contents = dict(contents)
    for name, data in info_files.items():
        contents[f"{info}/{name}"] = data
    record = [_record_line(p, d) for p, d in contents.items()] + [f"{info}/RECORD,,"]
    contents[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = f"{_dist_name(project)}-{project['version']}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(directory, wheel), "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in contents.items():
            # A fixed date: the same sources give the same wheel.
            entry = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(entry, data)
    return wheel


# ---------------------------------------------------------------------------------------------
# PEP 517 and PEP 660 hooks


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    info, files = _dist_info(_project())
    os.makedirs(os.path.join(metadata_directory, info), exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(metadata_directory, info, name), "wb") as f:
            f.write(data)
    return info


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    contents = {}
    for path, source in _package_files().items():
        with open(source, "rb") as f:
            contents[path] = f.read()
    for name, data in _generate().items():
        contents[f"{PACKAGE}/{GENERATED}/{name}"] = data
    return _write_wheel(wheel_directory, _project(), contents)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """The source directory on sys.path through a .pth file; the stubs are generated into
    the source tree's curation_client/_proto/ (git ignores it). Re-run after a proto change."""
    target = os.path.join(ROOT, PACKAGE, GENERATED)
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(target)
    for name, data in _generate().items():
        with open(os.path.join(target, name), "wb") as f:
            f.write(data)
    return _write_wheel(wheel_directory, _project(),
                        {f"__editable__.{PACKAGE}.pth": (ROOT + "\n").encode()})


def build_sdist(sdist_directory, config_settings=None):
    project = _project()
    base = f"{_dist_name(project)}-{project['version']}"
    members = {f"{base}/{p}": s for p, s in _package_files().items()}
    for extra in SDIST_EXTRA:
        source = os.path.join(ROOT, extra)
        if os.path.isfile(source):
            members[f"{base}/{extra}"] = source
            continue
        for directory, subdirs, names in os.walk(source):
            subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
            for name in sorted(n for n in names if not n.endswith(".pyc")):
                path = os.path.join(directory, name)
                members[f"{base}/{os.path.relpath(path, ROOT)}"] = path
    for proto in PROTOS:
        members[f"{base}/proto/{proto}"] = os.path.join(_proto_dir(), proto)
    name = f"{base}.tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz", format=tarfile.PAX_FORMAT) as t:
        def add(path, data):
            entry = tarfile.TarInfo(path)
            entry.size, entry.mode, entry.mtime = len(data), 0o644, 0
            t.addfile(entry, io.BytesIO(data))

        add(f"{base}/PKG-INFO", _metadata(project).encode())
        for path, source in sorted(members.items()):
            with open(source, "rb") as f:
                add(path, f.read())
    return name
