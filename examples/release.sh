#!/usr/bin/env bash
# Release a model the way CI does (docs/CI.md): pack it into an encrypted, signed bundle, sign the
# bundle with minisign's format, sign the model directory with OpenSSF Model Signing, and collect
# the artifacts in one directory ready to upload.
#
#   MLIC_SECRET_KEY   the vendor secret key file's contents (a CI secret); or MLIC_KEY_FILE
#   MLIC_PASSPHRASE   its passphrase, if it is encrypted
#   MLIC_OMS_KEY      an ECDSA P-256 private key in PEM (from `mlic keygen --type ecdsa-p256`); or MLIC_OMS_KEY_FILE
#   MODEL_DIR MODEL_NAME MODEL_VERSION   what to release;  OUT_DIR (default dist)
#   MLIC              how to run mlic (default: the mlic of this checkout)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
MLIC=${MLIC:-"node $here/bin/mlic.js"}
: "${MODEL_DIR:?set MODEL_DIR}" "${MODEL_NAME:?set MODEL_NAME}" "${MODEL_VERSION:?set MODEL_VERSION}"
OUT_DIR=${OUT_DIR:-dist}
mkdir -p "$OUT_DIR"

key_args=()
if [[ -n "${MLIC_KEY_FILE:-}" ]]; then key_args=(--key "$MLIC_KEY_FILE"); elif [[ -z "${MLIC_SECRET_KEY:-}" ]]; then
  echo "release: set MLIC_SECRET_KEY (or MLIC_KEY_FILE)" >&2; exit 2
fi
oms_key=${MLIC_OMS_KEY_FILE:-}
cleanup() { [[ -n "${tmp_oms:-}" ]] && rm -f "$tmp_oms"; return 0; }
trap cleanup EXIT
if [[ -z "$oms_key" ]]; then
  : "${MLIC_OMS_KEY:?set MLIC_OMS_KEY (or MLIC_OMS_KEY_FILE)}"
  tmp_oms=$(mktemp); chmod 600 "$tmp_oms"; printf '%s\n' "$MLIC_OMS_KEY" > "$tmp_oms"; oms_key=$tmp_oms
fi

bundle="$OUT_DIR/$MODEL_NAME-$MODEL_VERSION.mlb"
echo "release: packing $MODEL_DIR as $MODEL_NAME $MODEL_VERSION" >&2
$MLIC pack "$MODEL_DIR" --name "$MODEL_NAME" --version "$MODEL_VERSION" "${key_args[@]}" -o "$bundle" --force
echo "release: signing the bundle (minisign format)" >&2
$MLIC sign "$bundle" "${key_args[@]}" --comment "$MODEL_NAME $MODEL_VERSION $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "release: signing the model directory (OpenSSF Model Signing)" >&2
$MLIC sign --oms "$MODEL_DIR" --key "$oms_key" -o "$OUT_DIR/$MODEL_NAME-$MODEL_VERSION.oms.sig"
( cd "$OUT_DIR" && sha256sum "$(basename "$bundle")" "$(basename "$bundle").minisig" "$MODEL_NAME-$MODEL_VERSION.oms.sig" > SHA256SUMS )
echo "release: artifacts in $OUT_DIR:" >&2
ls -l "$OUT_DIR" >&2
