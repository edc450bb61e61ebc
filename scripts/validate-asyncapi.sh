#!/usr/bin/env bash
# Validates asyncapi.yaml with the AsyncAPI parser and its built-in ruleset: the same
# `@asyncapi/parser` and diagnostics that `asyncapi validate` (@asyncapi/cli) runs. Fails on any
# error or warning; information and hints are printed. Installs the pinned parser into
# .npm-asyncapi/. Called by scripts/test.sh; runs alone too.
#
# Why not @asyncapi/cli itself: its releases for Node 20 (4.x) pull 1,469 packages (1.5 GB) and
# only install with --legacy-peer-deps (a plain `npm install` spent 15 minutes in peer-dependency
# resolution without finishing), and it posts usage metrics on every run; 5.x and later need
# Node 24. The parser is 169 packages, 55 MB, installed in about 25 s from a cold cache.
set -euo pipefail
cd "$(dirname "$0")/.."

ASYNCAPI_PARSER_VERSION=3.6.3
prefix=.npm-asyncapi

npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error \
  "@asyncapi/parser@$ASYNCAPI_PARSER_VERSION" >/dev/null

NODE_PATH="$PWD/$prefix/node_modules" node - asyncapi.yaml <<'JS'
const fs = require("fs");
const { Parser, DiagnosticSeverity } = require("@asyncapi/parser");
const file = process.argv[2];
(async () => {
  const parser = new Parser();
  const text = fs.readFileSync(file, "utf8");
  const diagnostics = await parser.validate(text, { source: file });
  let failing = 0;
  for (const d of diagnostics) {
    const severity = DiagnosticSeverity[d.severity];
    if (d.severity <= DiagnosticSeverity.Warning) failing++;
    const line = d.range ? d.range.start.line + 1 : "?";
    console.log(`${file}:${line}: ${severity} ${d.code} at ${d.path.join(".") || "(root)"}: ${d.message}`);
  }
  const { document } = await parser.parse(text, { source: file });
  if (failing > 0 || !document) {
    console.error(`${file}: ${failing} error(s) or warning(s)`);
    process.exit(1);
  }
  console.log(`${file}: valid AsyncAPI ${document.version()}, no errors or warnings`);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
JS
