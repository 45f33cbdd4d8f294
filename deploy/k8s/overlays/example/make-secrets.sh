#!/usr/bin/env bash
# Makes ./secrets for this overlay, keeping any file that is already there: a random admin
# token, and a self-signed CA with a server certificate for shard a's Service, its pod and
# localhost (the exec probes). Never commit ./secrets (.gitignore keeps it out).
# Usage: make-secrets.sh [NAMESPACE [NAME]]   (default: curation curation-shard-a)
set -euo pipefail
cd "$(dirname "$0")"
namespace="${1:-curation}"
name="${2:-curation-shard-a}"
umask 077
mkdir -p secrets
cd secrets
if [ ! -f admin-token ]; then
  # 32 random bytes as hex: well over the server's 16-character minimum.
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >admin-token
  echo "made secrets/admin-token"
fi
if [ ! -f ca.crt ]; then
  openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=curation ${name} CA" \
    -keyout ca.key -out ca.crt 2>/dev/null
  echo "made secrets/ca.crt (and ca.key, which stays here)"
fi
if [ ! -f tls.crt ]; then
  svc="${name}.${namespace}.svc"
  sans="DNS:${name},DNS:${name}.${namespace},DNS:${svc},DNS:${svc}.cluster.local"
  sans="${sans},DNS:*.${svc},DNS:*.${svc}.cluster.local,DNS:localhost,IP:127.0.0.1"
  openssl req -newkey rsa:3072 -nodes -subj "/CN=${svc}" -keyout tls.key -out tls.csr 2>/dev/null
  openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
    -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$sans") \
    -out tls.crt 2>/dev/null
  rm -f tls.csr ca.srl
  echo "made secrets/tls.crt for ${sans}"
fi
