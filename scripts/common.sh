#!/usr/bin/env bash
# Shared helpers for the scripts: make sure the toolchain the build needs is present.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
      export PATH="$HOME/.cargo/bin:$PATH"
    else
      echo "error: Rust is not installed (expected rustup's cargo on PATH or in ~/.cargo/bin); the build needs Rust >= 1.89" >&2
      exit 1
    fi
  fi
  # rustfmt and clippy ship with rustup's default profile; add them if a minimal profile is in use.
  if command -v rustup >/dev/null 2>&1; then
    rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt >/dev/null 2>&1 || true
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy >/dev/null 2>&1 || true
  fi
}

ensure_build_tools() {
  local missing=()
  command -v cc >/dev/null 2>&1 || missing+=(gcc)
  command -v make >/dev/null 2>&1 || missing+=(make)
  # The server feature builds the bundled NNG C library, which needs CMake >= 3.13.
  if ! command -v cmake >/dev/null 2>&1; then
    missing+=(cmake)
  elif ! printf '3.13\n%s\n' "$(cmake --version | head -n1 | awk '{print $3}')" | sort -V -C; then
    missing+=(cmake)
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
