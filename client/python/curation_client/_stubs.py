"""Finds the Python modules generated from proto/ (by the build, never committed).

Where they are looked for, first match wins:
  1. the directory in $CURATION_PROTO_PY (the build writes them to
     <build dir>/client/python/gen; the tests set this);
  2. curation_client/_generated, for a copy of the package that bundles them;
  3. anywhere on sys.path already (e.g. PYTHONPATH=<build dir>/client/python/gen).
"""
import os
import sys

ENV_VAR = "CURATION_PROTO_PY"


def _load():
    bundled = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_generated")
    for directory in (os.environ.get(ENV_VAR), bundled):
        if directory and os.path.isfile(os.path.join(directory, "curation", "v1",
                                                     "curation_pb2.py")):
            if directory not in sys.path:
                sys.path.insert(0, directory)
            break
    try:
        from curation.v1 import admin_pb2, admin_pb2_grpc, curation_pb2, curation_pb2_grpc
    except ImportError as e:
        raise ImportError(
            "curation_client: the generated curation.v1 stubs were not found. Build them "
            "(cmake --build BUILD_DIR --target curation_python_stubs) and set "
            f"{ENV_VAR}=BUILD_DIR/client/python/gen ({e})") from e
    return curation_pb2, curation_pb2_grpc, admin_pb2, admin_pb2_grpc


curation_pb2, curation_pb2_grpc, admin_pb2, admin_pb2_grpc = _load()
