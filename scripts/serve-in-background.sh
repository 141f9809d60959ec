# Sourced by the serve test scripts: builds flowlm, starts `flowlm serve --port 0` on the
# model given as $1 (default: the bundled one), stops it on exit, and sets $address to its URL.
cargo build --release --quiet -p flowlm-cli
serve_log=$(mktemp)
"${CARGO_TARGET_DIR:-target}/release/flowlm" serve --port 0 --model "${1:-models/default}" >"$serve_log" 2>&1 &
serve_pid=$!
trap 'kill $serve_pid 2>/dev/null; rm -f "$serve_log"' EXIT
address=""
for _ in $(seq 1 100); do
    address=$(grep -o 'http://[0-9.]*:[0-9]*' "$serve_log" | head -1 || true)
    [ -n "$address" ] && break
    sleep 0.2
done
if [ -z "$address" ]; then
    echo "the server did not start:" >&2
    cat "$serve_log" >&2
    exit 1
fi
