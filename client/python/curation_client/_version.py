"""The version of curation-client, read by the build backend too (build_backend/)."""
__version__ = "0.1.0"
