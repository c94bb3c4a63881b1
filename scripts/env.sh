# Sourced by the scripts: shared settings. Cargo's target dir lives outside the clone so warm runs
# reuse it; a fresh machine simply starts empty.
export HOGPIPE_CACHE="${HOGPIPE_CACHE:-$HOME/.cache/hogpipe}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOGPIPE_CACHE/target}"
mkdir -p "$HOGPIPE_CACHE" "$CARGO_TARGET_DIR"

ensure_rust() {
  if ! command -v cargo >/dev/null; then
    echo "hogpipe: cargo is required (https://rustup.rs or Debian's cargo package)" >&2
    exit 1
  fi
}
