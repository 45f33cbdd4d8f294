"""The curation.v1 modules, generated from proto/ into curation_client/_proto when the package
is built (build_backend/curation_build.py); a source checkout has them only after `pip install
-e client/python`."""
try:
    from curation_client._proto import (admin_pb2, admin_pb2_grpc, curation_pb2,
                                        curation_pb2_grpc)
except ImportError as e:  # pragma: no cover - only a source tree that was never built
    raise ImportError(
        "curation_client: the generated curation.v1 stubs are missing: install the package "
        "(pip install ./client/python, or pip install -e ./client/python for a checkout) "
        f"rather than importing it from the source tree ({e})") from e

__all__ = ["admin_pb2", "admin_pb2_grpc", "curation_pb2", "curation_pb2_grpc"]
