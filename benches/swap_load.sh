#!/usr/bin/env bash
# The model-switch load check of tests/swaps.rs at a bigger scale, for docs/reliability.md's figures:
# two hybrid models on a 20,000-item synthetic catalog (so the graph index serves, saved beside each
# artifact and reused on every switch), 32 keep-alive clients on POST /v1/recall against the real
# binary following a SQLite registry, 10 s of load before and after ten activations through the
# admin API with 1 s of load between them. Every answer is checked against the model it names
# (items and scores), and latency is reported before, during and after the switches.
#
# Run from the repository root:   bash benches/swap_load.sh
# Settings (environment): USERS (5000), ITEMS (20000), DIM (64), CLIENTS (32), SWAPS (10),
# PHASE_MS (10000), PAUSE_MS (1000), EPOCHS (3). Builds the test in release mode if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "# fmrecall swap load ($(date '+%Y-%m-%d %H:%M:%S'), $(nproc) cores)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
FMRECALL_SWAP_USERS=${USERS:-5000} \
FMRECALL_SWAP_ITEMS=${ITEMS:-20000} \
FMRECALL_SWAP_DIM=${DIM:-64} \
FMRECALL_SWAP_CLIENTS=${CLIENTS:-32} \
FMRECALL_SWAP_SWAPS=${SWAPS:-10} \
FMRECALL_SWAP_PHASE_MS=${PHASE_MS:-10000} \
FMRECALL_SWAP_PAUSE_MS=${PAUSE_MS:-1000} \
FMRECALL_SWAP_EPOCHS=${EPOCHS:-3} \
    cargo test --release --test swaps -- --nocapture 2>&1 | grep -E '^swap load|test result|panicked|failed' 
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
