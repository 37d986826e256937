// Keeps docs/clients.md honest: every configuration block in it is run by a test (the e2e tests
// read the blocks out of the doc), the table that says which test runs which block is complete
// and true, each block parses as what it claims to be, the blocks no client here can run
// (containerd 2's config_path, a standalone buildkitd.toml) have the structure those programs
// read, Berth's own YAML blocks load through Berth's config parser, and the README's short
// client snippets say the same as the doc.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { parseDocSnippets, readDocSnippets, type DocSnippet } from '../helpers/clients.js';

const DOC = 'docs/clients.md';

// ---------------------------------------------------------------------------------------------
// A TOML reader for the subset client configs use: [tables], [[arrays of tables]], dotted and
// quoted keys, basic and literal strings, booleans, integers, one-line arrays. Anything else is
// an error, so a block that is not plain TOML fails here rather than on an operator's machine.

type TomlValue = string | number | boolean | TomlValue[] | TomlTable;
interface TomlTable {
  [key: string]: TomlValue;
}

function isTable(v: TomlValue | undefined): v is TomlTable {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function stripComment(line: string): string {
  let quote: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote !== null) {
      if (c === '\\' && quote === '"') i++;
      else if (c === quote) quote = null;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '#') return line.slice(0, i);
  }
  return line;
}

function parseKeyPath(text: string, where: string): string[] {
  const keys: string[] = [];
  let rest = text.trim();
  while (rest.length > 0) {
    let m: RegExpExecArray | null;
    if ((m = /^"((?:[^"\\]|\\.)*)"/.exec(rest))) keys.push(JSON.parse(`"${m[1] ?? ''}"`) as string);
    else if ((m = /^'([^']*)'/.exec(rest))) keys.push(m[1] ?? '');
    else if ((m = /^[A-Za-z0-9_-]+/.exec(rest))) keys.push(m[0]);
    else throw new Error(`${where}: bad key "${text}"`);
    rest = rest.slice(m[0].length).trim();
    if (rest.startsWith('.')) rest = rest.slice(1).trim();
    else if (rest.length > 0) throw new Error(`${where}: bad key "${text}"`);
  }
  return keys;
}

function splitTopLevel(text: string, where: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quote: string | null = null;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote !== null) {
      if (c === '\\' && quote === '"') i++;
      else if (c === quote) quote = null;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '[') depth++;
    else if (c === ']') depth--;
    else if (c === ',' && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  if (quote !== null || depth !== 0) throw new Error(`${where}: unbalanced value`);
  parts.push(text.slice(start));
  return parts.map((p) => p.trim()).filter((p, i, all) => p !== '' || i < all.length - 1);
}

function parseValue(text: string, where: string): TomlValue {
  const v = text.trim();
  if (/^"(?:[^"\\]|\\.)*"$/.test(v)) return JSON.parse(v) as string;
  if (/^'[^']*'$/.test(v)) return v.slice(1, -1);
  if (v === 'true' || v === 'false') return v === 'true';
  if (/^[+-]?\d+$/.test(v)) return Number(v);
  if (v.startsWith('[') && v.endsWith(']')) {
    const inner = v.slice(1, -1).trim();
    return inner === '' ? [] : splitTopLevel(inner, where).filter((p) => p !== '').map((p) => parseValue(p, where));
  }
  throw new Error(`${where}: unsupported value ${v}`);
}

function parseToml(text: string, source: string): TomlTable {
  const root: TomlTable = {};
  const defined = new Set<string>();
  let current = root;
  const descend = (from: TomlTable, keys: string[], where: string): TomlTable => {
    let t = from;
    for (const k of keys) {
      const next = t[k];
      if (next === undefined) t = t[k] = {};
      else if (isTable(next)) t = next;
      else if (Array.isArray(next) && isTable(next[next.length - 1])) t = next[next.length - 1] as TomlTable;
      else throw new Error(`${where}: ${k} is not a table`);
    }
    return t;
  };
  text.split('\n').forEach((raw, i) => {
    const where = `${source}:${i + 1}`;
    const line = stripComment(raw).trim();
    if (line === '') return;
    let m: RegExpExecArray | null;
    if ((m = /^\[\[(.+)\]\]$/.exec(line))) {
      const keys = parseKeyPath(m[1] ?? '', where);
      const parent = descend(root, keys.slice(0, -1), where);
      const last = keys[keys.length - 1] ?? '';
      const arr = parent[last] ?? (parent[last] = []);
      if (!Array.isArray(arr)) throw new Error(`${where}: ${last} is not an array of tables`);
      const t: TomlTable = {};
      arr.push(t);
      current = t;
    } else if ((m = /^\[(.+)\]$/.exec(line))) {
      const keys = parseKeyPath(m[1] ?? '', where);
      const id = JSON.stringify(keys);
      if (defined.has(id)) throw new Error(`${where}: table [${m[1] ?? ''}] defined twice`);
      defined.add(id);
      current = descend(root, keys, where);
    } else if ((m = /^([^=]+)=(.*)$/.exec(line))) {
      const keys = parseKeyPath(m[1] ?? '', where);
      const t = descend(current, keys.slice(0, -1), where);
      const last = keys[keys.length - 1] ?? '';
      if (last in t) throw new Error(`${where}: key ${last} set twice`);
      t[last] = parseValue(m[2] ?? '', where);
    } else {
      throw new Error(`${where}: not TOML: ${raw}`);
    }
  });
  return root;
}

function at(t: TomlTable, ...keys: string[]): TomlValue | undefined {
  let v: TomlValue | undefined = t;
  for (const k of keys) v = isTable(v) ? v[k] : undefined;
  return v;
}

// ---------------------------------------------------------------------------------------------

async function testSources(): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.name.endsWith('.ts')) out.set(p, await readFile(p, 'utf8'));
    }
  };
  await walk('test');
  return out;
}

/** Snippet ids a source file reads by a literal id: with docSnippet in the e2e tests, with get() here. */
function idsUsedBy(source: string): Set<string> {
  if (/const DOC = '([^']+)'/.exec(source)?.[1] !== DOC) return new Set();
  return new Set([...source.matchAll(/(?:docSnippet\(\s*DOC\s*,|\bget\([^,()]+(?:\(\))?,)\s*'([^']+)'/g)].map((m) => m[1] ?? ''));
}

async function snippets(): Promise<Map<string, DocSnippet>> {
  return readDocSnippets(DOC);
}

function get(all: Map<string, DocSnippet>, id: string): DocSnippet {
  const s = all.get(id);
  assert.ok(s, `${DOC} has a snippet ${id}`);
  return s;
}

test('every snippet in docs/clients.md is run by a test, and every snippet a test asks for exists', async () => {
  const all = await snippets();
  const sources = await testSources();
  const used = new Map<string, string[]>();
  for (const [file, src] of sources) for (const id of idsUsedBy(src)) used.set(id, [...(used.get(id) ?? []), file]);
  for (const id of all.keys()) assert.ok(used.has(id), `snippet ${id} is not used by any test`);
  for (const [id, files] of used) assert.ok(all.has(id), `${files.join(', ')} ask for snippet ${id}, which ${DOC} does not have`);
});

test('the doc\'s "which test runs which snippet" table is complete and true', async () => {
  const all = await snippets();
  const text = await readFile(DOC, 'utf8');
  const table = text.slice(text.indexOf('## Which test runs which snippet'));
  const sources = await testSources();
  const listed = new Set<string>();
  for (const row of table.split('\n').filter((l) => l.startsWith('| `'))) {
    const [idsCell, filesCell] = row.split('|').slice(1, 3);
    const ids = [...(idsCell ?? '').matchAll(/`([^`]+)`/g)].map((m) => m[1] ?? '');
    const files = [...(filesCell ?? '').matchAll(/`([^`]+)`/g)].map((m) => m[1] ?? '');
    assert.ok(files.length > 0, `a test file for ${ids.join(', ')}`);
    for (const id of ids) {
      listed.add(id);
      for (const f of files) {
        const src = sources.get(f);
        assert.ok(src !== undefined, `${f} exists`);
        assert.ok(idsUsedBy(src).has(id), `${f} runs ${id}`);
      }
    }
  }
  assert.deepEqual([...listed].sort(), [...all.keys()].sort());
});

test('each snippet parses as its language (JSON, TOML, YAML)', async () => {
  for (const s of (await snippets()).values()) {
    if (s.lang === 'json') JSON.parse(s.text);
    else if (s.lang === 'toml') parseToml(s.text, s.id);
    else if (s.lang === 'yaml') parseYaml(s.text);
    else assert.fail(`${s.id}: unexpected language ${s.lang}`);
  }
});

test('the TOML reader refuses what it does not understand (so the check above can fail)', () => {
  assert.throws(() => parseToml('[a]\nx = 1\n[a]\n', 't'), /defined twice/);
  assert.throws(() => parseToml('x = 1\nx = 2\n', 't'), /set twice/);
  assert.throws(() => parseToml('mirrors = ["a", "b"\n', 't'), /unbalanced|unsupported/);
  assert.throws(() => parseToml('just words\n', 't'), /not TOML/);
  assert.deepEqual(parseToml('[registry."docker.io"]\n  mirrors = ["m:5000"] # c\n[[r]]\nx = true\n[[r]]\nx = false\n', 't'), {
    registry: { 'docker.io': { mirrors: ['m:5000'] } },
    r: [{ x: true }, { x: false }],
  });
});

test('buildkitd.toml: the mirror is listed for docker.io and http = true sits in the mirror\'s own section', async () => {
  const t = parseToml(get(await snippets(), 'buildkitd-toml').text, 'buildkitd-toml');
  assert.deepEqual(at(t, 'registry', 'docker.io', 'mirrors'), ['mirror.example.com:5000']);
  assert.equal(at(t, 'registry', 'mirror.example.com:5000', 'http'), true);
  assert.equal(at(t, 'registry', 'docker.io', 'http'), undefined, 'http = true under docker.io would switch Docker Hub itself to HTTP');
});

test('containerd config_path (1.x and 2.x) names the directory the hosts.toml snippets live in', async () => {
  const all = await snippets();
  const v1 = parseToml(get(all, 'containerd-config-path-1x').text, '1x');
  const v2 = parseToml(get(all, 'containerd-config-path-2x').text, '2x');
  assert.equal(v1['version'], 2);
  assert.equal(v2['version'], 3);
  const dir1 = at(v1, 'plugins', 'io.containerd.grpc.v1.cri', 'registry', 'config_path');
  const dir2 = at(v2, 'plugins', 'io.containerd.cri.v1.images', 'registry', 'config_path');
  assert.equal(dir1, '/etc/containerd/certs.d');
  assert.equal(dir2, dir1);
  for (const [id, registry, server] of [
    ['containerd-hosts-docker-io', 'docker.io', 'https://registry-1.docker.io'],
    ['containerd-hosts-ghcr-io', 'ghcr.io', 'https://ghcr.io'],
  ] as const) {
    const s = get(all, id);
    assert.ok(s.text.startsWith(`# ${String(dir1)}/${registry}/hosts.toml\n`), `${id} says where it goes`);
    const t = parseToml(s.text, id);
    assert.equal(t['server'], server);
    assert.deepEqual(at(t, 'host', 'http://mirror.example.com:5000', 'capabilities'), ['pull', 'resolve']);
  }
});

test('registries.conf snippets: Docker Hub mirrored at the mirror\'s root, ghcr.io under its name as a path prefix', async () => {
  const all = await snippets();
  const hub = parseToml(get(all, 'registries-conf').text, 'registries-conf');
  assert.deepEqual(hub['unqualified-search-registries'], ['docker.io']);
  const reg = (hub['registry'] as TomlTable[])[0];
  assert.ok(reg);
  assert.equal(reg['prefix'], 'docker.io');
  assert.deepEqual(reg['mirror'], [{ location: 'mirror.example.com:5000', insecure: true }]);
  const ghcr = (parseToml(get(all, 'registries-conf-ghcr-io').text, 'ghcr')['registry'] as TomlTable[])[0];
  assert.ok(ghcr);
  assert.deepEqual(ghcr['mirror'], [{ location: 'mirror.example.com:5000/ghcr.io', insecure: true }]);
});

test('Berth\'s own YAML in the doc loads through Berth\'s config parser', async () => {
  const text = await readFile(DOC, 'utf8');
  const upstreams = /```yaml\n(upstreams:[\s\S]*?)```/.exec(text)?.[1];
  assert.ok(upstreams, 'the upstream list at the top of the doc');
  const cfg = parseConfig({ text: upstreams, fileName: 'docs/clients.md (upstreams)' });
  assert.deepEqual(cfg.upstreams.map((u) => u.name), ['docker.io', 'ghcr.io']);
  const auth = parseConfig({ text: get(await snippets(), 'berth-auth-anonymous-networks').text, fileName: 'berth-auth-anonymous-networks' });
  assert.equal(auth.auth.mode, 'token');
  assert.deepEqual(auth.auth.anonymous, { pull: true, networks: ['10.20.0.0/16'] });
});

test('the dockerd snippet names the mirror by URL with a scheme and nothing after the host', async () => {
  const cfg = JSON.parse(get(await snippets(), 'dockerd-daemon-json').text) as { 'registry-mirrors': string[]; 'insecure-registries': string[] };
  for (const m of cfg['registry-mirrors']) {
    const u = new URL(m);
    assert.match(u.protocol, /^https?:$/);
    assert.equal(u.pathname, '/', 'a mirror URL must be the root of a host');
    assert.equal(u.username + u.password + u.search + u.hash, '');
  }
  assert.deepEqual(cfg['insecure-registries'], cfg['registry-mirrors'].map((m) => new URL(m).host));
});

test('the README\'s client snippets say the same as docs/clients.md', async () => {
  const readme = await readFile('README.md', 'utf8');
  const start = readme.indexOf('## Point clients at it');
  assert.ok(start >= 0);
  const end = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  assert.match(section, /docs\/clients\.md/, 'the README points at docs/clients.md');
  const blocks = [...section.matchAll(/```(\w+)\n([\s\S]*?)```/g)].map((m) => ({ lang: m[1] ?? '', text: m[2] ?? '' }));
  const doc = [...(await snippets()).values()];
  const same = (a: { lang: string; text: string }, b: { lang: string; text: string }): boolean => {
    if (a.lang !== b.lang) return false;
    try {
      if (a.lang === 'json') return JSON.stringify(JSON.parse(a.text)) === JSON.stringify(JSON.parse(b.text));
      if (a.lang === 'toml') return JSON.stringify(parseToml(a.text, 'a')) === JSON.stringify(parseToml(b.text, 'b'));
    } catch {
      return false;
    }
    return a.text.trim() === b.text.trim();
  };
  for (const b of blocks) assert.ok(doc.some((d) => same(b, d)), `README block is one of the doc's snippets:\n${b.text}`);
});

test('parseDocSnippets refuses an id used twice and ignores unmarked blocks', () => {
  const md = '```toml snippet=a\nx = 1\n```\n\n```toml\ny = 2\n```\n';
  assert.deepEqual([...parseDocSnippets(md).keys()], ['a']);
  assert.throws(() => parseDocSnippets(`${md}\n\`\`\`json snippet=a\n{}\n\`\`\`\n`), /used twice/);
});
