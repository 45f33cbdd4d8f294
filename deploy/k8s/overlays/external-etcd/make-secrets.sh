#!/usr/bin/env bash
# Makes ./secrets/admin-token for this overlay (a random token, kept if already there).
# Never commit ./secrets (.gitignore keeps it out).
set -euo pipefail
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
if [ ! -f secrets/admin-token ]; then
  # 32 random bytes as hex: well over the server's 16-character minimum.
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >secrets/admin-token
  echo "made secrets/admin-token"
fi
