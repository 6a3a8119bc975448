#!/usr/bin/env bash
# The main job on an embedded database: builds the engine (release) and runs the demo workload
# (schema with foreign keys, a few thousand rows in durable transactions, constraint errors,
# optimistic versions, soft delete, cascades, a change stream, timings), then `ormdb info`.
# Then the Python half: builds and installs the `ormdb` wheel and `sqlalchemy-ormdb` into a venv
# and runs a SQLAlchemy ORM workload on `ormdb:///...` plus a native graph fetch with EXPLAIN
# ANALYZE and timings (scripts/demo.py).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/python_env.sh"
cd "$ROOT"

ensure_rust
ensure_build_tools

log "building ormdb (release)"
cargo build --release -p ormdb --features cli --quiet

DIR="${ORMDB_DEMO_DIR:-$(mktemp -d)}"
DB="$DIR/demo.db"
log "running the demo on $DB"
./target/release/ormdb demo "$DB" --users "${ORMDB_DEMO_USERS:-500}"
echo
log "relations derived from foreign keys"
./target/release/ormdb relations "$DB"
echo
log "schema history"
./target/release/ormdb history "$DB"
echo
log "Python: DB-API workload and native graph fetch (installs the ormdb wheel into a venv)"
ensure_python_env
"$ORMDB_PY" "$ROOT/scripts/demo.py"
