#!/usr/bin/env bash
# Generates throwaway TLS material for the tests into DIR (created if missing), with the
# openssl CLI. Nothing here is secret: every key is made fresh per run and lives in a temp dir.
#
#   ca.pem                  test CA (ca.key its key)
#   server.pem, server.key  broker certificate (CN=strata-broker; SAN localhost, 127.0.0.1;
#                           serverAuth + clientAuth, so brokers present it to each other)
#   server-keystore.pem     server.key and server.pem in one file (ssl.keystore.type=PEM)
#   server-encrypted.key    server.key as encrypted PKCS#8 (PBES2, AES-256-CBC), password
#                           "strata-key-pw"; server-encrypted-keystore.pem it and server.pem
#   server2.pem, server2.key  another broker certificate (CN=strata-broker-2), for reload tests
#   client.pem, client.key  client certificate, subject C=US,O=Strata,OU=clients,CN=alice
#   expired.pem, expired.key  client certificate of the test CA that expired in 2020
#   untrusted-ca.pem        another CA; untrusted.pem, untrusted.key a client certificate of it
set -euo pipefail
dir=${1:?usage: gen-test-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ca() { # name subject
    key "$1.key"
    openssl req -x509 -new -key "$1.key" -subj "$2" -days 30 -out "$1.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
}

leaf() { # name subject ca extensions...
    local name=$1 subj=$2 ca=$3
    shift 3
    key "$name.key"
    openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr"
    printf '%s\n' "$@" >"$name.ext"
    openssl x509 -req -in "$name.csr" -CA "$ca.pem" -CAkey "$ca.key" -CAcreateserial \
        -days 30 -extfile "$name.ext" -out "$name.pem" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
}

server_ext=("basicConstraints=CA:FALSE" "keyUsage=digitalSignature"
    "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1")
client_ext=("basicConstraints=CA:FALSE" "keyUsage=digitalSignature" "extendedKeyUsage=clientAuth")

ca ca "/CN=Strata Test CA"
leaf server "/CN=strata-broker" ca "${server_ext[@]}"
leaf server2 "/CN=strata-broker-2" ca "${server_ext[@]}"
cat server.key server.pem >server-keystore.pem
openssl pkcs8 -topk8 -in server.key -out server-encrypted.key -v2 aes-256-cbc -passout pass:strata-key-pw
cat server-encrypted.key server.pem >server-encrypted-keystore.pem
leaf client "/C=US/O=Strata/OU=clients/CN=alice" ca "${client_ext[@]}"

# An expired certificate needs explicit dates, which only `openssl ca` takes.
mkdir -p expired-ca
: >expired-ca/index.txt
cat >expired-ca/ca.cnf <<'EOF'
[ca]
default_ca = test
[test]
database = expired-ca/index.txt
new_certs_dir = expired-ca
serial = expired-ca/serial
default_md = sha256
policy = any
copy_extensions = none
[any]
commonName = supplied
[ext]
basicConstraints = CA:FALSE
keyUsage = digitalSignature
extendedKeyUsage = clientAuth
EOF
echo 01 >expired-ca/serial
key expired.key
openssl req -new -key expired.key -subj "/CN=expired" -out expired.csr
openssl ca -batch -config expired-ca/ca.cnf -cert ca.pem -keyfile ca.key -extensions ext \
    -startdate 20200101000000Z -enddate 20200201000000Z -in expired.csr -out expired.pem 2>/dev/null
rm -rf expired-ca expired.csr

ca untrusted-ca "/CN=Someone Else's CA"
leaf untrusted "/CN=mallory" untrusted-ca "${client_ext[@]}"
rm -f ./*.srl
