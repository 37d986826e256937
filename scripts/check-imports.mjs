#!/usr/bin/env node
// The import-cycle check run by `npm run lint` (ESLint's no-restricted-imports, in
// eslint.config.js, holds the folder rules; this holds the one rule ESLint cannot: no cycles).
// It reads every .ts file under src/ and workers/, takes its relative imports and re-exports (type
// imports too: a cycle of types is still two modules that cannot be read apart), and fails with
// each cycle spelled out, file by file. Exit 0: no cycle; 1: cycles found.
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const roots = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['src', 'workers'];

function walk(dir) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** `./x.js` → the .ts file it compiles from, or null for a package or a file outside the scan. */
function target(from, spec) {
  if (!spec.startsWith('.')) return null;
  const abs = resolve(dirname(from), spec);
  for (const c of [abs.replace(/\.js$/, '.ts'), `${abs}.ts`, join(abs, 'index.ts')]) if (existsSync(c)) return c;
  return null;
}

const files = roots.flatMap((r) => (existsSync(resolve(root, r)) ? walk(resolve(root, r)) : []));
const graph = new Map();
for (const f of files) {
  const info = ts.preProcessFile(readFileSync(f, 'utf8'), true, true);
  graph.set(f, [...new Set(info.importedFiles.map((i) => target(f, i.fileName)).filter((t) => t !== null))]);
}

// Tarjan's strongly connected components: every component with more than one file (or a file
// importing itself) is a cycle.
let index = 0;
const idx = new Map();
const low = new Map();
const stack = [];
const on = new Set();
const cycles = [];
function strong(v) {
  idx.set(v, index);
  low.set(v, index);
  index += 1;
  stack.push(v);
  on.add(v);
  for (const w of graph.get(v) ?? []) {
    if (!graph.has(w)) continue;
    if (!idx.has(w)) {
      strong(w);
      low.set(v, Math.min(low.get(v), low.get(w)));
    } else if (on.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
  }
  if (low.get(v) === idx.get(v)) {
    const comp = [];
    let w;
    do {
      w = stack.pop();
      on.delete(w);
      comp.push(w);
    } while (w !== v);
    if (comp.length > 1 || (graph.get(v) ?? []).includes(v)) cycles.push(comp);
  }
}
for (const f of graph.keys()) if (!idx.has(f)) strong(f);

/** One concrete loop through a component, for the message: a → b → … → a. */
function loopIn(comp) {
  const inComp = new Set(comp);
  const start = comp.slice().sort()[0];
  const prev = new Map([[start, null]]);
  const queue = [start];
  while (queue.length > 0) {
    const v = queue.shift();
    for (const w of graph.get(v) ?? []) {
      if (!inComp.has(w)) continue;
      if (w === start) {
        const path = [start];
        for (let x = v; x !== start && x !== null; x = prev.get(x)) path.splice(1, 0, x);
        return [...path, start];
      }
      if (!prev.has(w)) {
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  return comp;
}

if (cycles.length === 0) {
  console.log(`check-imports: ${graph.size} files, no import cycles`);
  process.exit(0);
}
for (const c of cycles) {
  console.error(`import cycle: ${loopIn(c).map((f) => relative(root, f)).join(' → ')}`);
}
console.error(`check-imports: ${cycles.length} import cycle(s); break each by moving the shared part down a layer`);
process.exit(1);
