#!/usr/bin/env bash
# Makes a test CA and the certificates config/examples/tls.toml names, with
# the openssl CLI (a test tool only: the edge itself uses rustls, no OpenSSL).
#   tools/tls-certs/make-test-certs.sh [OUT_DIR]   (default config/tls)
# OUT_DIR gets: ca.crt/ca.key (the test CA, also used as carrier CA and
# client CA), edge.crt/edge.key (the edge, SAN IP 127.0.0.1),
# carrier.crt/carrier.key (a carrier, SAN DNS sip.carrier.example, IP 127.0.0.2).
set -euo pipefail
out="${1:-config/tls}"
mkdir -p "$out"
cd "$out"
days=825
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
  -subj "/CN=sipedge test CA" -keyout ca.key -out ca.crt \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
leaf() { # name subject-alt-names
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
    -keyout "$1.key" -out "$1.csr" 2>/dev/null
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n' "$2" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
    -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
leaf edge "IP:127.0.0.1"
leaf carrier "DNS:sip.carrier.example,IP:127.0.0.2"
chmod 600 ./*.key
echo "test certificates in $out: ca.crt edge.crt edge.key carrier.crt carrier.key"
