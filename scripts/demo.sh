#!/usr/bin/env bash
# The teaching demo: sets up, builds, starts the bank, the wallet and two webhook gateways on
# their default ports with data in ./var, walks through a short narrated story (users, a
# sync top-up, an async top-up settled by webhook, a transfer, a withdrawal, the ledger),
# prints the live dashboard's address, then leaves the services running until Ctrl-C.
#
# Usage: scripts/demo.sh [--fresh] [--no-wait]
#   --fresh    start from empty databases (removes ./var)
#   --no-wait  stop the services after the walk-through instead of waiting for Ctrl-C
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

fresh=0; wait_for_ctrl_c=1
for arg in "$@"; do
  case "$arg" in
    --fresh) fresh=1 ;;
    --no-wait) wait_for_ctrl_c=0 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

bold=$(tput bold 2>/dev/null || true); dim=$(tput dim 2>/dev/null || true); off=$(tput sgr0 2>/dev/null || true)
say()  { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
note() { printf '%s   %s%s\n' "$dim" "$*" "$off"; }
run()  { printf '%s$ %s%s\n' "$bold" "$*" "$off"; "$@" || true; }
pause() { [ -t 1 ] && sleep "${1:-1}" || true; }

say "Setting up (Debian packages) and building (release preset)"
scripts/setup
mkdir -p build
buildlog=build/demo-build.log
if ! { cmake --preset release && cmake --build --preset release -j"$(nproc 2>/dev/null || echo 2)"; } >"$buildlog" 2>&1; then
  tail -n 30 "$buildlog" >&2
  echo "demo: the build failed (full log: $buildlog)" >&2
  exit 1
fi
note "built (log: $buildlog)"
bin="$root/build/release/bin"
export PATH="$bin:$PATH"

for port in 8080 8081 8082 8083 8084 8085 5555 5556; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "demo: port $port is already in use — is another demo running? stop it first (Ctrl-C in its terminal)." >&2
    exit 3
  fi
done

[ "$fresh" -eq 1 ] && rm -rf var
mkdir -p var/log
pids=()
stop() {
  trap - INT TERM EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    printf '\nStopping the services… '
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    echo "stopped. Data is kept in ./var (scripts/demo.sh --fresh starts over)."
  fi
}
trap stop EXIT
trap 'exit 0' INT TERM

wait_ready() { # url
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$1/healthz" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "demo: $1 did not come up; see var/log/" >&2; exit 1
}

say "Starting bank-service (:8081), wallet-service (:8080) and two webhook gateways (:8082, :8084)"
notify=http://127.0.0.1:8082/v1/webhooks/bank,http://127.0.0.1:8084/v1/webhooks/bank
# Both dashboards (:8082 and :8084) may call the wallet and the bank's fault API and open
# either gateway's WebSocket, so a page fails over from one gateway to the other.
origins=http://127.0.0.1:8082,http://localhost:8082,http://127.0.0.1:8084,http://localhost:8084
bank-service --data-dir var --seed 1 --time-scale 0.001 --allowed-origin "$origins" \
  2>>var/log/bank.log & pids+=($!)
wait_ready http://127.0.0.1:8081
wallet-service --data-dir var --notify-url "$notify" --allowed-origin "$origins" \
  2>>var/log/wallet.log & pids+=($!)
wait_ready http://127.0.0.1:8080
webhook-gateway --data-dir var --http-port 8082 --ws-port 8083 --peer-ws ws://127.0.0.1:8085/ws \
  --allowed-origin "$origins" \
  2>>var/log/gateway-1.log & pids+=($!)
webhook-gateway --data-dir var --http-port 8084 --ws-port 8085 --peer-ws ws://127.0.0.1:8083/ws \
  --allowed-origin "$origins" \
  2>>var/log/gateway-2.log & pids+=($!)
wait_ready http://127.0.0.1:8082
wait_ready http://127.0.0.1:8084
export PAYLAB_GATEWAY_URL=ws://127.0.0.1:8083,ws://127.0.0.1:8085
note "logs: var/log/*.log   databases: var/bank.db, var/wallet.db   secrets: var/secrets/"
dashboard="http://127.0.0.1:8082/#token=$(cat var/secrets/admin_token)"
say "The live dashboard: open $dashboard"
note "(the token after # never leaves your browser; it lets the page watch every user)"
pause 2

say "1. Alice and Bob join the wallet"
note "The wallet opens a bank account for each (₹10,000 to start) and records a mandate"
note "that lets the wallet debit it towards its nodal account."
for u in alice bob; do
  if paylab balance "$u" >/dev/null 2>&1; then note "$u already exists (kept from an earlier run)"; else run paylab user add "$u"; fi
done
pause

say "2. Alice tops up ₹500 — synchronously"
note "The wallet asks the bank to move ₹500 from HDFC-ALICE to NODAL-PAYLAB and holds"
note "the request open until the bank answers; -v shows the HTTP exchange."
run paylab -v topup alice 500 --mode sync --key auto
pause

say "3. Alice tops up ₹250 — asynchronously"
note "The wallet records the request, answers 202 at once, and learns the outcome from the"
note "bank's signed webhook: bank → gateway (verifies the signature) → ZeroMQ → wallet."
note "--wait ws: the CLI subscribes over WebSocket and is told the final state (no polling)."
run paylab topup alice 250 --mode async --wait ws
pause

say "4. Alice pays Bob ₹100 — inside the wallet's ledger, no bank involved"
run paylab send alice bob 100 --note "dinner"
pause

say "5. Bob withdraws ₹50 back to his bank account"
note "The wallet holds ₹50 first, asks the bank to pay out from the nodal account,"
note "then settles or returns the hold on the bank's answer."
run paylab withdraw bob 50 --mode sync
pause

say "6. The ledger: double entry, every transaction's entries sum to zero"
run paylab ledger
run paylab verify --wallet-db var/wallet.db --bank-db var/bank.db

cat <<TXT

${bold}Try next${off} (in another terminal, from $(pwd)):
  export PATH="$bin:\$PATH"
  paylab balance alice                      paylab history alice
  paylab faults set latency_ms=3000         then: paylab topup alice 200   (504: unknown, then reconciled)
  paylab tx wtx_…                           the timeline of one payment
  paylab faults set lost_response_rate=1    the bank commits but never answers
  paylab watch alice                        live events over WebSocket (Ctrl-C to stop)
  paylab topup alice 100 --mode async --wait poll:200   polled, compare with --wait ws
  paylab faults set webhook_duplicate_rate=1 webhook_delay_ms=500   duplicates, reordering
  paylab faults clear                       paylab verify
  dashboard: $dashboard
  sqlite3 -readonly var/wallet.db 'select * from v_balances'
TXT

if [ "$wait_for_ctrl_c" -eq 1 ]; then
  printf '\nThe services keep running. Press Ctrl-C to stop them.\n'
  wait "${pids[@]}" || true
fi
