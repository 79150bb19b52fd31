#!/usr/bin/env bash
# The README's demo: a vendor makes a key, packs a real ONNX model, inspects and verifies the
# bundle; then a tampered copy is rejected. Runs on the bundled fixtures; writes only to a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
MLIC="node bin/mlic.js"
work=$(mktemp -d "${TMPDIR:-/tmp}/mlic-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "$2"; }

export MLIC_PASSPHRASE='demo passphrase (use a real one)'
step "1. the vendor makes its key pair (encrypted secret key, minisign public key)" "mlic keygen --out \$work --name acme"
$MLIC keygen --out "$work" --name acme
ls -l "$work"

step "2. pack a real ONNX model with external weights into an encrypted, signed bundle" "mlic pack fixtures/models/onnx-external --name tiny-mlp --version 2.1.0 --key acme.key"
$MLIC pack fixtures/models/onnx-external --name tiny-mlp --version 2.1.0 --key "$work/acme.key" -o "$work/tiny-mlp-2.1.0.mlb"

step "3. anyone can inspect the manifest (no secret needed)" "mlic inspect tiny-mlp-2.1.0.mlb"
$MLIC inspect "$work/tiny-mlp-2.1.0.mlb"

step "4. and verify signature and every ciphertext digest with the public key alone" "mlic verify tiny-mlp-2.1.0.mlb --pub acme.pub"
$MLIC verify "$work/tiny-mlp-2.1.0.mlb" --pub "$work/acme.pub"

step "5. the manifest signature is plain minisign" "tar xf tiny-mlp-2.1.0.mlb && minisign -Vm mlic-bundle/manifest.json -p acme.pub"
if command -v minisign >/dev/null; then
  (cd "$work" && tar xf tiny-mlp-2.1.0.mlb && minisign -Vm mlic-bundle/manifest.json -p acme.pub)
else
  echo "(minisign is not installed here; skipping this step)"
fi

step "6. flip one byte of the ciphertext in a copy: verify refuses it (exit 1)" "mlic verify tampered.mlb --pub acme.pub"
cp "$work/tiny-mlp-2.1.0.mlb" "$work/tampered.mlb"
size=$(stat -c %s "$work/tampered.mlb")
printf '\x42' | dd of="$work/tampered.mlb" bs=1 seek=$((size - 1100)) conv=notrunc status=none
set +e
$MLIC verify "$work/tampered.mlb" --pub "$work/acme.pub"
code=$?
set -e
echo "exit status: $code"
[[ $code == 1 ]] || { echo "demo: expected exit 1 for a tampered bundle" >&2; exit 1; }

printf '\n\033[1mdemo finished: the intact bundle verified, the tampered copy was refused.\033[0m\n'
