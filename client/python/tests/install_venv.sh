#!/usr/bin/env bash
# PythonClientInstall: a fresh venv at $1 (on Debian's python3-grpcio, python3-protobuf and
# python3-numpy) with the package at $2 pip-installed into it the way a user installs it:
# `pip install DIR`, offline (--no-index) and blind to the machine's pip configuration
# (--isolated), so that a missing dependency fails here instead of reaching for an index.
# --without-pip: the venv runs Debian's pip from the system site-packages instead of
# copying its own in (ensurepip alone takes longer than the rest).
set -euo pipefail
venv=$1 package=$2
rm -rf "$venv"
/usr/bin/python3 -m venv --system-site-packages --without-pip "$venv"
"$venv/bin/python" -m pip install --isolated --no-index --no-cache-dir \
  --disable-pip-version-check --quiet "$package"
"$venv/bin/python" -c 'import curation_client, sys; print("installed", curation_client.__version__, "at", curation_client.__file__)'
