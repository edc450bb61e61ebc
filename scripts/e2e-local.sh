#!/usr/bin/env bash
# End-to-end checks of the local hub as a user meets it: the real `wscat` from npm, curl-style
# HTTP calls, and the demo page in Debian's headless Chromium driven by playwright-core.
# Installs wscat and playwright-core into .npm-e2e/ and Chromium with apt when missing (never a
# browser download through playwright). Starts `wshub-local` on a free loopback port with the
# out-of-the-box configuration (in-memory store, token `hello`) and stops it on exit.
# Called by scripts/test.sh; runs alone too. Every check fails the script when it fails.
set -euo pipefail
cd "$(dirname "$0")/.."

WSCAT_VERSION=6.1.0
PLAYWRIGHT_CORE_VERSION=1.65.1
prefix=.npm-e2e
out=target/e2e
mkdir -p "$out"
rm -f "$out"/*.log "$out"/*.out "$out"/demo.png

npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error \
  "wscat@$WSCAT_VERSION" "playwright-core@$PLAYWRIGHT_CORE_VERSION" >/dev/null
wscat="$prefix/node_modules/.bin/wscat"
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "e2e: /usr/bin/chromium is missing; install Debian's chromium (apt-get install chromium)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

cargo build --locked --quiet --bin wshub-local

# The defaults a fresh machine has: no auth variables (so the local token `hello`), no table,
# no DynamoDB endpoint (so the in-memory store), whatever the calling shell exported.
env -u AUTH_TOKENS -u JWT_SECRET -u CONNECTIONS_TABLE -u AWS_ENDPOINT_URL_DYNAMODB \
  ./target/debug/wshub-local --port 0 >"$out/hub.out" 2>"$out/hub.log" &
hub_pid=$!
stop_hub() {
  if kill -0 "$hub_pid" 2>/dev/null; then
    kill -TERM "$hub_pid" 2>/dev/null || true
    wait "$hub_pid" 2>/dev/null || true
  fi
}
trap stop_hub EXIT

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "  ok: $1"; }
fail() { failed=$((failed + 1)); echo "  FAILED: $1" >&2; }
check() { # check NAME COMMAND...: passes when COMMAND succeeds
  local name=$1
  shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}
# wait_for FILE TEXT [SECONDS]: true once FILE contains TEXT.
wait_for() {
  local file=$1 text=$2 tries=$((${3:-10} * 10))
  for _ in $(seq "$tries"); do
    grep -qF -- "$text" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "    $file has no '$text':" >&2
  sed 's/^/    | /' "$file" >&2 || true
  return 1
}
# json FIELD: reads one JSON value from stdin and prints FIELD of it.
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s)[process.argv[1]];process.stdout.write(typeof v==="string"?v:JSON.stringify(v))})' "$1"; }
urlencode() { node -e 'process.stdout.write(encodeURIComponent(process.argv[1]))' "$1"; }
# http METHOD URL [BODY]: prints "STATUS ERRORTYPE BODY" (curl-like, through Node's fetch).
http() {
  node -e '
    const [method, url, body] = process.argv.slice(1);
    fetch(url, {method, body: method === "GET" || method === "DELETE" ? undefined : body})
      .then(async r => process.stdout.write(`${r.status} ${r.headers.get("x-amzn-errortype") || "-"} ${await r.text()}`))
      .catch(e => { console.error(e); process.exit(1); });' "$@"
}

wait_for "$out/hub.out" "ready on" 60 || { cat "$out/hub.log" >&2; exit 1; }
ws=$(sed -n 's/^wshub-local ready on \(ws:[^ ]*\).*/\1/p' "$out/hub.out" | head -1)
base="http${ws#ws}"
echo "e2e: hub at $ws"
check "ready line shows the wscat command" grep -qF "wscat --header token:hello -c $ws" "$out/hub.out"
check "no-auth warning names the local token" grep -q 'accepting the local-only token "hello"' "$out/hub.log"

# wscat -x sends only while its stdin is open (CI has none), hence `< <(sleep N)`.
"$wscat" --no-color --header token:hello -c "$ws" -x '{"action":"ping","id":1}' -w 1 \
  >"$out/ping.out" 2>&1 < <(sleep 3) || true
check "wscat --header token:hello: ping gets pong" grep -qF '{"action":"pong","id":1}' "$out/ping.out"

rc=0
"$wscat" --no-color -c "$ws" -x '{"action":"ping"}' >"$out/no-token.out" 2>&1 < <(sleep 3) || rc=$?
check "wscat without a token exits non-zero" test "$rc" -ne 0
check "wscat without a token is refused with 401 or 403" grep -qE 'Unexpected server response: 40[13]' "$out/no-token.out"
check "the refused client got no pong" bash -c "! grep -qF pong '$out/no-token.out'"

# A listener subscribes and stays 12 s; everything below reaches it within that time.
"$wscat" --no-color --header token:hello -c "$ws/local" \
  -x '{"action":"subscribe","topic":"room"}' -x '{"action":"whoami"}' -w 12 \
  >"$out/listener.out" 2>&1 < <(sleep 14) &
listener_pid=$!
check "listener subscribed" wait_for "$out/listener.out" '"action":"whoami"'
listener_id=$(grep -F '"action":"whoami"' "$out/listener.out" | head -1 | json connectionId)
check "listener has an API Gateway-shaped connection id" test "${#listener_id}" -eq 16

"$wscat" --no-color --header token:hello -c "$ws" \
  -x '{"action":"sendmessage","topic":"room","data":"from-wscat"}' -w 1 \
  >"$out/sender.out" 2>&1 < <(sleep 3) || true
check "sendmessage reports one recipient" grep -qF '"recipients":1' "$out/sender.out"
check "sendmessage reaches the other client" wait_for "$out/listener.out" '"data":"from-wscat"'

for push in '{"data":"sqs-broadcast"}' '{"userId":"anonymous","data":"sqs-user"}' '{"topic":"room","data":"sqs-topic"}'; do
  answer=$(http POST "$base/_local/sqs" "$push")
  check "/_local/sqs $push answers no failures" test "$answer" = '200 - {"batchItemFailures":[]}'
done
for data in sqs-broadcast sqs-user sqs-topic; do
  check "$data push arrives" wait_for "$out/listener.out" "\"data\":\"$data\""
done
answer=$(http POST "$base/_local/sqs" '{"topik":"room","data":"x"}')
check "a malformed push is reported in batchItemFailures" grep -q '"itemIdentifier"' <<<"$answer"
answer=$(http GET "$base/@connections/$(urlencode "$listener_id")")
check "GET @connections has connectedAt, lastActiveAt, identity.sourceIp" \
  bash -c 'grep -q "^200 " <<<"$1" && grep -q connectedAt <<<"$1" && grep -q lastActiveAt <<<"$1" && grep -q "\"sourceIp\":\"127.0.0.1\"" <<<"$1"' _ "$answer"
answer=$(http POST "$base/local/@connections/$(urlencode "$listener_id")" '{"via":"management-api"}')
check "POST @connections to an open socket answers 200" grep -q '^200 ' <<<"$answer"
check "POST @connections data arrives" wait_for "$out/listener.out" '{"via":"management-api"}'

wait "$listener_pid" || true
check "rows of the closed listener are gone" bash -c '
  for _ in $(seq 50); do
    [ "$(node -e "fetch(process.argv[1]).then(r=>process.stdout.write(String(r.status)))" "$1")" = 404 ] && exit 0
    sleep 0.1
  done
  exit 1' _ "$base/_local/connections/$(urlencode "$listener_id")"
answer=$(http POST "$base/@connections/$(urlencode "$listener_id")" 'late')
check "POST @connections to the closed client gives 410 GoneException" grep -q '^410 GoneException ' <<<"$answer"

# The demo page in a real browser: token by subprotocol, subscribe, a push through /_local/sqs.
if NODE_PATH="$prefix/node_modules" node scripts/e2e-demo.cjs "$base" "$out/demo.png" >"$out/demo.out" 2>&1; then
  pass "demo page in headless Chromium: connect, subscribe, receive an SQS push ($out/demo.png)"
else
  fail "demo page in headless Chromium"
  sed 's/^/    | /' "$out/demo.out" >&2
fi
check "demo screenshot kept" test -s "$out/demo.png"

kill -TERM "$hub_pid"
rc=0
wait "$hub_pid" || rc=$?
check "hub exits cleanly on SIGTERM" test "$rc" -eq 0

echo "e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
