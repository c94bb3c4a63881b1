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

# Debian packages the build needs: rdkafka's `cmake-build` compiles the librdkafka sources vendored
# in rdkafka-sys with cmake, make and a C/C++ toolchain. curl, TLS, SASL and zlib are off, but
# librdkafka 2.12's rdkafka_conf.c includes <curl/curl.h> all the same, so the curl headers must
# be there (libcurl4-openssl-dev; nothing links against them).
ensure_build_deps() {
  local missing=()
  command -v cmake >/dev/null || missing+=(cmake)
  command -v make >/dev/null || missing+=(make)
  command -v cc >/dev/null || missing+=(gcc)
  command -v c++ >/dev/null || missing+=(g++)
  if ! command -v cc >/dev/null || ! echo '#include <curl/curl.h>' | cc -E -x c - >/dev/null 2>&1; then
    missing+=(libcurl4-openssl-dev)
  fi
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
      echo "hogpipe: missing ${missing[*]} and not root: install them with apt-get first" >&2
      exit 1
    fi
    sudo=(sudo)
  fi
  echo "hogpipe: installing ${missing[*]} (Debian packages)" >&2
  "${sudo[@]}" apt-get install -y "${missing[@]}" >&2 ||
    { "${sudo[@]}" apt-get update >&2 && "${sudo[@]}" apt-get install -y "${missing[@]}" >&2; }
}
