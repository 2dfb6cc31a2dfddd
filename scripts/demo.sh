#!/usr/bin/env bash
# The teaching demo: checks that its ports are free, sets up, builds, starts the bank, the
# wallet and two webhook gateways on their default ports with data in ./var, then walks
# through a narrated story with the figures it measures (a sync top-up, an async top-up pushed
# over WebSocket, a transfer, a withdrawal, a slow bank in both modes, a duplicated webhook),
# prints the live dashboard's address, and leaves the services running until Ctrl-C.
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
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

# Bold and dim on a terminal only: a log or a pipe gets plain text.
bold=""; dim=""; off=""
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  bold=$(tput bold 2>/dev/null || true); dim=$(tput dim 2>/dev/null || true); off=$(tput sgr0 2>/dev/null || true)
fi
say()   { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
note()  { printf '%s   %s%s\n' "$dim" "$*" "$off"; }
shown() { printf '   → %s\n' "$*"; }
pause() { if [ -t 1 ]; then sleep "${1:-1}"; fi; }

# ---------------------------------------------------------------- the ports, before anything
ports=(8080 8081 8082 8083 8084 8085 5555 5556)

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# "wallet-service (pid 1234)" for the process listening on port, or "" when it cannot be told
# (no ss or lsof, or a process of another user).
port_holder() {
  local who=""
  if command -v ss >/dev/null 2>&1; then
    who=$(ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -n 1 || true)
  fi
  if [ -z "$who" ] && command -v lsof >/dev/null 2>&1; then
    who=$(lsof -nP -iTCP:"$1" -sTCP:LISTEN -Fpc 2>/dev/null | sed -n 'N;s/^p\([0-9]*\)\nc\(.*\)/\2 (pid \1)/p' | head -n 1 || true)
  fi
  printf '%s' "$who"
}

busy=(); holder_pids=()
for port in "${ports[@]}"; do
  if port_busy "$port"; then
    who=$(port_holder "$port")
    busy+=("$(printf '  %-5s %s' "$port" "${who:-held by a process this user cannot see (try: sudo ss -ltnp 'sport = :'$port)}")")
    pid=$(printf '%s' "$who" | sed -n 's/.*(pid \([0-9]*\))$/\1/p' || true)
    if [ -n "$pid" ] && [[ " ${holder_pids[*]} " != *" $pid "* ]]; then holder_pids+=("$pid"); fi
  fi
done
if [ ${#busy[@]} -gt 0 ]; then
  {
    echo "demo: the demo needs ports 8080-8085, 5555 and 5556 on 127.0.0.1; these are in use:"
    printf '%s\n' "${busy[@]}"
    echo "If that is another demo, stop it with Ctrl-C in its terminal."
    if [ ${#holder_pids[@]} -gt 0 ]; then
      echo "Otherwise stop those processes (kill ${holder_pids[*]}) and run scripts/demo.sh again."
    else
      echo "Otherwise stop whatever holds them and run scripts/demo.sh again."
    fi
  } >&2
  exit 3
fi

# ---------------------------------------------------------------- build, start
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

[ "$fresh" -eq 1 ] && rm -rf var
mkdir -p var/log
pids=(); names=()
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

# A service that died mid-demo means the stack is broken: say which, show its log, stop.
alive() {
  local i
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "demo: ${names[$i]} stopped unexpectedly; the end of var/log/${names[$i]}.log:" >&2
      tail -n 15 "var/log/${names[$i]}.log" >&2 || true
      exit 1
    fi
  done
}

say "Starting bank-service (:8081), wallet-service (:8080) and two webhook gateways (:8082, :8084)"
notify=http://127.0.0.1:8082/v1/webhooks/bank,http://127.0.0.1:8084/v1/webhooks/bank
# Both dashboards (:8082 and :8084) may call the wallet and the bank's fault API and open
# either gateway's WebSocket, so a page fails over from one gateway to the other.
origins=http://127.0.0.1:8082,http://localhost:8082,http://127.0.0.1:8084,http://localhost:8084
bank-service --data-dir var --seed 1 --time-scale 0.001 --allowed-origin "$origins" \
  >>var/log/bank.log 2>&1 & pids+=($!); names+=(bank)
wait_ready http://127.0.0.1:8081
wallet-service --data-dir var --notify-url "$notify" --allowed-origin "$origins" \
  >>var/log/wallet.log 2>&1 & pids+=($!); names+=(wallet)
wait_ready http://127.0.0.1:8080
webhook-gateway --data-dir var --http-port 8082 --ws-port 8083 --peer-ws ws://127.0.0.1:8085/ws \
  --allowed-origin "$origins" \
  >>var/log/gateway-1.log 2>&1 & pids+=($!); names+=(gateway-1)
webhook-gateway --data-dir var --http-port 8084 --ws-port 8085 --peer-ws ws://127.0.0.1:8083/ws \
  --allowed-origin "$origins" \
  >>var/log/gateway-2.log 2>&1 & pids+=($!); names+=(gateway-2)
wait_ready http://127.0.0.1:8082
wait_ready http://127.0.0.1:8084
export PAYLAB_GATEWAY_URL=ws://127.0.0.1:8083,ws://127.0.0.1:8085
note "logs: var/log/*.log   databases: var/bank.db, var/wallet.db   secrets: var/secrets/"
note "restarting one of them by hand: docs/architecture.md"
dashboard="http://127.0.0.1:8082/#token=$(cat var/secrets/admin_token)"
say "The live dashboard: open $dashboard"
note "(the token after # never leaves your browser; it lets the page watch every user)"
pause 2

# ---------------------------------------------------------------- measuring, without jq
# Every money command runs with --json: one object with the same keys whatever --wait says
# (docs/api.md). The wait's own fields come after "wait":, so the two halves are read apart.

# Runs paylab ARGS… bounded in time; prints the command; stdout in $out, exit code in $rc.
pl() {
  printf '%s$ paylab %s%s\n' "$bold" "$*" "$off"
  if command -v timeout >/dev/null 2>&1; then
    out=$(timeout 45 paylab "$@") && rc=0 || rc=$?
  else
    out=$(paylab "$@") && rc=0 || rc=$?
  fi
}
top()  { printf '%s' "${1%%\"wait\":*}"; }
wait_part() { case "$1" in *'"wait":'*) printf '%s' "${1#*\"wait\":}" ;; esac; }
# The value of "key" in a flat piece of JSON: a string without its quotes, a number, true,
# false or null; "" when absent.
jget() {
  printf '%s' "$2" | sed -n 's/.*"'"$1"'":\("[^"]*"\|[^,}]*\).*/\1/p' | head -n 1 | sed 's/^"\(.*\)"$/\1/' || true
}
# Paise as rupees with Indian digit grouping, as the CLI prints them: 123456789 → ₹12,34,567.89.
rupees() {
  local p=$1 sign="" r head rest=""
  if [ "$p" -lt 0 ]; then sign=-; p=$((-p)); fi
  r=$((p / 100)); head=$r
  if [ "$r" -ge 1000 ]; then
    rest=$(printf ',%03d' $((r % 1000))); head=$((r / 1000))
    while [ "$head" -ge 100 ]; do rest=$(printf ',%02d' $((head % 100)))$rest; head=$((head / 100)); done
  fi
  printf '%s₹%s%s.%02d' "$sign" "$head" "$rest" $((p % 100))
}
us_as_ms() { printf '%d.%d ms' $(($1 / 1000)) $((($1 % 1000) / 100)); }

# What a money command measured, as one line; the fields are also left in variables.
measure() {
  local t w
  t=$(top "$out"); w=$(wait_part "$out")
  id=$(jget id "$t"); status=$(jget status "$t"); http=$(jget http_status "$t")
  elapsed=$(jget elapsed_ms "$t"); by=$(jget settled_by "$t"); balance=$(jget balance_minor "$t")
  code=$(jget code "$t"); final_ms=$(jget elapsed_ms "$w"); push_us=$(jget push_us "$w")
  if [ -z "$id" ] || [ "$id" = null ]; then
    shown "no transaction: exit $rc, $http ${code:-}"
    return
  fi
}

surprises=0
# expect WHAT GOT WANTED…: a figure that is not one of WANTED is reported, not fatal.
expect() {
  local what=$1 got=$2 w; shift 2
  for w in "$@"; do [ "$got" = "$w" ] && return 0; done
  surprises=$((surprises + 1))
  printf '   ! expected %s to be %s, it was %s — look at: paylab tx %s, var/log/\n' "$what" "$*" "${got:-nothing}" "${id:-…}"
}

# The wallet's count of webhook deliveries it recognised as already applied.
duplicates() {
  local n
  n=$(curl -fsS http://127.0.0.1:8080/metrics 2>/dev/null | sed -n 's/^paylab_webhooks_total{result="duplicate"} \([0-9]*\).*/\1/p' | head -n 1 || true)
  printf '%s' "${n:-0}"
}
balance_of() { # user → paise, or "" when the wallet cannot say
  local b; b=$(paylab balance "$1" --json 2>/dev/null || true)
  jget balance_minor "$b"
}
faults() { paylab faults "$@" >/dev/null || { surprises=$((surprises + 1)); echo "   ! paylab faults $* failed"; }; }

# ---------------------------------------------------------------- the story
say "1. Alice and Bob join the wallet"
note "The wallet opens a bank account for each (₹10,000 to start) and records a mandate"
note "that lets the wallet debit it towards its nodal account."
for u in alice bob; do
  if paylab balance "$u" >/dev/null 2>&1; then
    note "$u already exists (kept from an earlier run)"
  elif ! paylab user add "$u"; then
    surprises=$((surprises + 1)); echo "   ! could not add $u"
  fi
done
faults clear
alive; pause

say "2. Alice tops up ₹500 — synchronously"
note "The wallet asks the bank to move ₹500 from HDFC-ALICE to NODAL-PAYLAB and keeps the"
note "request open until the bank answers: the answer is the outcome. -v shows the HTTP exchange."
pl -v topup alice 500 --key auto --json
measure
shown "$http $status in $elapsed ms, settled by the $by; balance $(rupees "${balance:-0}")"
expect "the status" "$status" succeeded
expect "who settled it" "$by" response
alive; pause

say "3. Alice tops up ₹250 — asynchronously, the outcome pushed over a WebSocket"
note "The wallet records the request and answers 202 at once; the bank's signed webhook"
note "(bank → gateway → ZeroMQ → wallet) settles it, and the gateway pushes the final state."
pl topup alice 250 --mode async --wait ws --json
measure
shown "$http accepted in $elapsed ms; $status ${final_ms:-?} ms after the request, settled by the $by, pushed $(us_as_ms "${push_us:-0}") after the wallet's commit"
expect "the first answer" "$http" 202
expect "the status" "$status" succeeded
expect "who settled it" "$by" webhook
alive; pause

say "4. Alice pays Bob ₹100 — inside the wallet's ledger, no bank involved"
pl send alice bob 100 --note dinner --json
measure
shown "$http $status in $elapsed ms; alice's balance $(rupees "${balance:-0}")"
expect "the status" "$status" succeeded
alive; pause

say "5. Bob withdraws ₹50 back to his bank account"
note "The wallet holds ₹50 first, asks the bank to pay out from the nodal account, then"
note "settles or returns the hold on the bank's answer."
pl withdraw bob 50 --json
measure
shown "$http $status in $elapsed ms, settled by the $by; bob's balance $(rupees "${balance:-0}")"
expect "the status" "$status" succeeded
alive; pause

say "6. A slow bank, synchronously: the caller waits, then gives up at 2 s"
note "The bank now takes 3 s. The wallet waits 2 s, then answers 504 'unknown': the bank may"
note "still move the money. It does at 3 s, and its webhook settles the transaction."
faults set latency_ms=3000
pl topup alice 200 --wait ws --json
measure
shown "first answer: $http unknown after $elapsed ms ($code); then $status ${final_ms:-?} ms after the request, settled by the $by"
expect "the first answer" "$http" 504
expect "the status" "$status" succeeded
expect "who settled it" "$by" webhook reconciler
alive; pause

say "7. The same slow bank, asynchronously: the caller is not held"
note "202 at once, whatever the bank does; the final state comes when the bank finishes."
pl topup alice 150 --mode async --wait ws --json
measure
shown "$http accepted in $elapsed ms; $status ${final_ms:-?} ms after the request, settled by the $by"
expect "the first answer" "$http" 202
expect "the status" "$status" succeeded
faults clear
alive; pause

say "8. Every webhook delivered twice: the second copy is recognised, nothing is credited twice"
note "Webhooks come at least once. The wallet records each webhook-id and refuses a second"
note "move out of a final state, so the copy changes nothing."
faults set webhook_duplicate_rate=1
dup_before=$(duplicates); balance_before=$(balance_of alice)
pl topup alice 100 --mode async --wait ws --json
measure
dup_after=$(duplicates)
for _ in $(seq 1 50); do # the copies may land just after the push: up to 5 s
  [ "$dup_after" -gt "$dup_before" ] && break
  sleep 0.1; dup_after=$(duplicates)
done
balance_after=$(balance_of alice)
shown "$http accepted in $elapsed ms; $status ${final_ms:-?} ms after the request, settled by the $by"
shown "duplicate webhooks recognised by the wallet: $dup_before → $dup_after (+$((dup_after - dup_before)), from /metrics); alice's balance rose by $(rupees $((${balance_after:-0} - ${balance_before:-0}))) for a ₹100.00 top-up"
expect "the status" "$status" succeeded
expect "duplicates recognised" "$([ "$dup_after" -gt "$dup_before" ] && echo yes || echo no)" yes
expect "the credit" "$((${balance_after:-0} - ${balance_before:-0}))" 10000
if [ -n "$id" ] && [ "$id" != null ]; then
  note "the timeline of $id says so:"
  paylab tx "$id" | sed -n '/duplicate/{s/^ *//;s/   */  /g;s/^/     /;p;}' | head -n 3 || true
fi
faults clear
alive; pause

say "9. The books: double entry, and the wallet and the bank agree"
note "verify checks every invariant: balances sum to zero, each transaction's entries too,"
note "no wallet below zero, nothing credited twice, the bank's payments match the wallet's."
paylab ledger --limit 6 || true
if paylab verify; then shown "verify: every invariant holds"; else surprises=$((surprises + 1)); echo "   ! verify found a breach (above)"; fi
alive

say "What next"
cat <<TXT
   In another terminal, from $root:
     export PATH="$bin:\$PATH"
     export PAYLAB_GATEWAY_URL=$PAYLAB_GATEWAY_URL
     paylab history alice             who settled each transaction
     paylab tx wtx_…                  the timeline of one payment
     paylab watch alice               live events over WebSocket (Ctrl-C stops)
   README.md ("A first session") has more: lost responses, lost webhooks, the reconciler.
   The failure-mode lab compares sync and async under every fault, with numbers and charts:
     paylab lab --list                each scenario, the claim it shows, its run time
     paylab lab                       runs them on clusters of its own (this demo is untouched),
                                      prints a table, writes lab-results/<timestamp>/
   The dashboard: $dashboard
TXT
if [ "$surprises" -eq 0 ]; then
  note "every step showed what it should"
else
  printf '%s   %d figure(s) differed from what the text says: see the ! lines above%s\n' "$bold" "$surprises" "$off"
fi

if [ "$wait_for_ctrl_c" -eq 1 ]; then
  printf '\nThe services keep running. Press Ctrl-C to stop them.\n'
  wait "${pids[@]}" || true
fi
