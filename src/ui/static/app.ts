/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/**
 * The UI page's script: a browser module compiled by the project's tsc (this file only uses the
 * DOM, no framework) and served by src/ui/assets.ts. Hash routes (#/, #/repositories,
 * #/repository/<name>, #/manifest/<name>@<digest>, #/actions) render into <main> from the JSON
 * under /ui/api. Text is always set as text, never as HTML. Writes carry the CSRF token.
 */

type Json = Record<string, unknown>;
type Child = Node | string | null | undefined | false;

interface Me {
  mode: 'login' | 'open' | 'closed';
  user: { subject: string; name: string; roles: string[] } | null;
  csrf: string;
  admin: boolean;
  deleteEnabled: boolean;
  upstreams: string[];
  /** Some `repositories` rule makes names hosted (pushed here). */
  hosted: boolean;
}

/** Repositories per page: the server describes only these (each is a few record reads). */
const PAGE_SIZE = 25;

let me: Me | null = null;
let refreshTimer: number | null = null;

// ------------------------------------------------------------------ helpers

function h(tag: string, attrs: Record<string, string | boolean | ((e: Event) => void) | undefined> = {}, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

async function api<T = Json>(path: string, init: { method?: string; body?: unknown } = {}): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (init.method && init.method !== 'GET') {
    headers['content-type'] = 'application/json';
    if (me) headers['x-csrf-token'] = me.csrf;
  }
  const res = await fetch(`/ui/api${path}`, {
    method: init.method ?? 'GET',
    headers,
    credentials: 'same-origin',
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  const text = await res.text();
  const data = text ? (JSON.parse(text) as unknown) : {};
  if (res.status === 401) {
    location.href = `/ui/login?returnTo=${encodeURIComponent(location.hash || '#/')}`;
    throw new ApiError(401, 'log in first');
  }
  if (!res.ok) {
    const errs = (data as { errors?: { message?: string }[] }).errors;
    throw new ApiError(res.status, errs?.[0]?.message ?? `HTTP ${res.status}`);
  }
  return data as T;
}

function bytes(n: unknown): string {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i === 0 ? v : v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}

function pct(r: unknown): string {
  return typeof r === 'number' ? `${(r * 100).toFixed(1)} %` : '–';
}

function when(iso: unknown): string {
  if (typeof iso !== 'string' || iso === '') return '–';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const s = Math.round((Date.now() - t) / 1000);
  const abs = Math.abs(s);
  const text = abs < 60 ? `${abs} s` : abs < 3600 ? `${Math.round(abs / 60)} min` : abs < 86400 ? `${Math.round(abs / 3600)} h` : `${Math.round(abs / 86400)} d`;
  return s >= 0 ? `${text} ago` : `in ${text}`;
}

function shortDigest(d: unknown): string {
  return typeof d === 'string' ? d.replace(/^sha256:/, '').slice(0, 12) : '';
}

/** A width class in steps of 5 % (the CSP allows no inline styles). */
function bar(fraction: number, label: string): HTMLElement {
  const f = Math.max(0, Math.min(1, fraction));
  const step = Math.round(f * 20) * 5;
  const cls = f >= 0.95 ? 'bar bad' : f >= 0.85 ? 'bar warn' : 'bar';
  return h('div', { class: cls, role: 'meter', 'aria-label': label, 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': String(Math.round(f * 100)) }, h('span', { class: `w${step}` }));
}

function badge(text: string, kind = ''): HTMLElement {
  return h('span', { class: `badge ${kind}` }, text);
}

function toast(text: string): void {
  const t = document.getElementById('toast');
  if (!t) return;
  t.textContent = text;
  t.classList.add('show');
  window.setTimeout(() => t.classList.remove('show'), 3000);
}

function main(): HTMLElement {
  return document.getElementById('main') as HTMLElement;
}

function render(...children: Child[]): void {
  const m = main();
  m.replaceChildren(...children.filter((c): c is Node | string => c !== null && c !== undefined && c !== false));
}

function errorBox(err: unknown): HTMLElement {
  return h('p', { class: 'error', role: 'alert' }, err instanceof Error ? err.message : String(err));
}

/** The `upstream` the UI's JSON gives a hosted repository (src/ui/hosted-view.ts). */
const HOSTED = '(hosted)';

function repoLink(name: string, upstream: string): string {
  return `#/repository/${encodeURIComponent(name)}?upstream=${encodeURIComponent(upstream)}`;
}

function manifestLink(name: string, upstream: string, digest: string): string {
  return `#/manifest/${encodeURIComponent(name)}@${digest}?upstream=${encodeURIComponent(upstream)}`;
}

function copyButton(text: string, label: string): HTMLElement {
  return h('button', {
    type: 'button', 'aria-label': label,
    onclick: () => {
      void navigator.clipboard?.writeText(text).then(() => toast('Copied'), () => toast('Copy failed: select the text instead'));
    },
  }, 'Copy');
}

// ------------------------------------------------------------------ pages

async function overview(): Promise<void> {
  const o = await api<Json>('/overview');
  const hits = o['hits'] as { sinceStart: Json; lastHour: Json };
  const ratioCard = (title: string, v: Json, test: string): HTMLElement =>
    h('section', { class: 'card', 'data-test': test, 'data-value': typeof v['all'] === 'number' ? String(v['all']) : '' },
      h('h2', {}, title),
      h('div', { class: 'big' }, pct(v['all'])),
      h('div', { class: 'muted' }, `manifests ${pct(v['manifest'])} · blobs ${pct(v['blob'])}`),
      h('div', { class: 'muted' }, `${(v['lookups'] as Json)['manifest'] as number} manifest and ${(v['lookups'] as Json)['blob'] as number} blob lookups`));
  const b = hits.sinceStart['bytes'] as { cache: number; upstream: number };
  const total = b.cache + b.upstream;
  const storage = o['storage'] as Json | null;
  const cap = storage ? ((storage['maxSize'] as number | null) ?? (storage['volumeBytes'] as number | null)) : null;
  const upstreams = (o['upstreams'] as Json[]) ?? [];
  const fills = ((o['fills'] as Json[]) ?? []);
  const gc = o['gc'] as Json | null;
  const ev = o['evictions'] as Json | null;
  render(
    h('h1', {}, 'Overview'),
    h('div', { class: 'grid' },
      ratioCard('Hit ratio, last hour', hits.lastHour, 'hit-ratio-hour'),
      ratioCard('Hit ratio since start', hits.sinceStart, 'hit-ratio-start'),
      h('section', { class: 'card', 'data-test': 'bytes' },
        h('h2', {}, 'Bytes served'),
        h('div', { class: 'big' }, bytes(b.cache)),
        h('div', { class: 'muted' }, `from cache; ${bytes(b.upstream)} streamed from upstream`),
        total > 0 ? bar(b.cache / total, 'share served from cache') : null),
      h('section', { class: 'card', 'data-test': 'storage' },
        h('h2', {}, 'Storage'),
        storage ? h('div', { class: 'big' }, bytes(storage['bytes'])) : h('div', { class: 'muted' }, 'not tracked'),
        storage ? h('div', { class: 'muted' }, `${String(storage['blobs'])} blobs, ${cap !== null ? `${bytes(cap)} ${storage['maxSize'] !== null ? 'cap' : 'volume'}` : 'no cap'}`) : null,
        storage && cap ? bar((storage['bytes'] as number) / cap, 'storage used') : null,
        storage && storage['storageFull'] === true ? badge('disk full', 'bad') : null),
      h('section', { class: 'card' },
        h('h2', {}, 'Garbage collection and eviction'),
        h('div', {}, gc ? `Last GC ${when(gc['at'])}: ${String(gc['blobs'])} blobs, ${bytes(gc['bytes'])}${gc['dryRun'] === true ? ' (dry run)' : ''}` : 'No GC since start'),
        h('div', { class: 'muted' }, ev ? `Evictions: ${String(ev['blobs'])} blobs, ${bytes(ev['bytes'])} in ${String(ev['runs'])} runs; last ${when(ev['lastRunAt'])}` : '')),
    ),
    h('h2', {}, 'Upstreams'),
    h('div', { class: 'scroll' }, h('table', { 'data-test': 'upstreams' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Upstream'), h('th', {}, 'State'), h('th', { class: 'num' }, 'Pulls left'), h('th', { class: 'hide-narrow' }, 'Window resets'), h('th', { class: 'num hide-narrow' }, 'Reserve'))),
      h('tbody', {}, ...upstreams.map((u) => {
        const rl = u['rateLimit'] as Json;
        const state = String(u['state']);
        return h('tr', { 'data-upstream': String(u['name']) },
          h('td', {}, String(u['name']), u['default'] === true ? badge('default') : null),
          h('td', {}, state === 'closed' ? badge('up', 'ok') : state === 'open' ? badge(`breaker open, retry in ${String(u['retryInSeconds'])} s`, 'bad') : badge(state, 'warn'), rl['exhausted'] === true ? badge('pulls exhausted', 'bad') : null),
          h('td', { class: 'num', 'data-test': 'ratelimit-remaining', 'data-value': rl['remaining'] === null ? '' : String(rl['remaining']) },
            rl['remaining'] === null ? 'not reported' : `${String(rl['remaining'])} / ${String(rl['limit'])}`),
          h('td', { class: 'hide-narrow' }, when(rl['resetAt'])),
          h('td', { class: 'num hide-narrow' }, String(o['reservePulls'])));
      })))),
    h('h2', {}, 'Downloads in progress'),
    fills.length === 0 ? h('p', { class: 'muted', 'data-test': 'fills-empty' }, 'Nothing is downloading now.') :
      h('div', { class: 'scroll' }, h('table', { 'data-test': 'fills' },
        h('thead', {}, h('tr', {}, h('th', {}, 'What'), h('th', {}, 'Upstream'), h('th', {}, 'Progress'), h('th', { class: 'hide-narrow' }, 'Started'))),
        h('tbody', {}, ...fills.map((f) => {
          const done = f['bytes'] as number | null;
          const size = f['size'] as number | null;
          // Clients joined to the download, once the fill coordinator reports them.
          const clients = typeof f['clients'] === 'number' ? ` · ${f['clients']} client${f['clients'] === 1 ? '' : 's'}` : '';
          return h('tr', { 'data-kind': String(f['kind']) },
            h('td', {}, badge(String(f['kind'])), ' ', h('code', {}, f['kind'] === 'blob' ? shortDigest(f['reference']) : `${String(f['name'])}:${String(f['reference'])}`)),
            h('td', {}, String(f['upstream'] ?? '–')),
            h('td', { 'data-test': 'fill-progress' }, done === null ? '–' : `${bytes(done)} of ${size === null ? '?' : bytes(size)}${clients}`, size ? bar(done! / size, 'download progress') : null),
            h('td', { class: 'hide-narrow' }, when(new Date(f['startedAt'] as number).toISOString())));
        })))),
  );
  refreshTimer = window.setTimeout(() => void route(), 3000);
}

async function repositories(params: URLSearchParams): Promise<void> {
  const query = params.get('q') ?? '';
  const upstream = params.get('upstream') ?? '';
  const last = params.get('last');
  const search = new URLSearchParams({ n: String(PAGE_SIZE) });
  if (query) search.set('q', query);
  if (upstream) search.set('upstream', upstream);
  if (last) search.set('last', last);
  const page = await api<{ repositories: Json[]; next: string | null; total: number }>(`/repositories?${search.toString()}`);
  const input = h('input', { type: 'search', id: 'repo-search', name: 'q', value: query, placeholder: 'name or glob, e.g. library/*' }) as HTMLInputElement;
  const upstreams = me?.upstreams ?? [];
  const select = h('select', { id: 'repo-upstream', name: 'upstream' },
    h('option', { value: '' }, 'all upstreams'),
    ...upstreams.map((u) => h('option', { value: u, selected: u === upstream }, u)),
    me?.hosted === true ? h('option', { value: HOSTED, selected: upstream === HOSTED }, 'hosted (pushed here)') : null) as HTMLSelectElement;
  const form = h('form', { class: 'search', role: 'search', onsubmit: (e: Event) => {
    e.preventDefault();
    const next = new URLSearchParams();
    if (input.value) next.set('q', input.value);
    if (select.value) next.set('upstream', select.value);
    location.hash = `#/repositories${next.size > 0 ? `?${next.toString()}` : ''}`;
  } }, h('label', { for: 'repo-search', class: 'muted' }, 'Search'), input,
  upstreams.length > 1 || me?.hosted === true ? h('label', { for: 'repo-upstream', class: 'muted' }, 'Upstream') : null, upstreams.length > 1 || me?.hosted === true ? select : null,
  h('button', { type: 'submit' }, 'Search'));
  render(
    h('h1', {}, 'Repositories'),
    form,
    h('p', { class: 'muted' }, `${page.total} ${me?.hosted === true ? '' : 'cached '}repositories${query ? ' match' : ''}`),
    page.repositories.length === 0 ? h('p', {}, 'Nothing cached yet.') :
      h('div', { class: 'scroll' }, h('table', { 'data-test': 'repositories' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Repository'), h('th', { class: 'hide-narrow' }, 'Upstream'), h('th', { class: 'num' }, 'Tags'), h('th', { class: 'num' }, 'Size'), h('th', { class: 'hide-narrow' }, 'Last pulled / pushed'))),
        h('tbody', {}, ...page.repositories.map((r) => h('tr', { 'data-repository': String(r['repository']) },
          h('td', {}, h('a', { href: repoLink(String(r['repository']), String(r['upstream'])) }, String(r['repository'])),
            r['hosted'] === true ? badge('hosted', 'ok') : null, r['pinned'] === true ? badge('pinned', 'ok') : null),
          h('td', { class: 'hide-narrow' }, r['hosted'] === true ? h('span', { class: 'muted' }, 'none (pushed here)') : String(r['upstream'])),
          h('td', { class: 'num' }, String(r['tags'])),
          h('td', { class: 'num' }, bytes(r['bytes'])),
          h('td', { class: 'hide-narrow' }, r['hosted'] === true ? `pushed ${when(r['lastPushed'])}` : when(r['lastPulled']))))))),
    h('div', { class: 'pager' },
      last ? h('button', { type: 'button', onclick: () => history.back() }, 'Previous') : null,
      page.next ? h('a', { class: 'button', href: `#/repositories?${new URLSearchParams({ ...(query ? { q: query } : {}), ...(upstream ? { upstream } : {}), last: page.next }).toString()}` }, 'Next page') : null),
  );
}

async function repository(name: string, params: URLSearchParams): Promise<void> {
  const upstream = params.get('upstream') ?? '';
  const r = await api<Json>(`/repository?${new URLSearchParams({ name, ...(upstream ? { upstream } : {}) }).toString()}`);
  const tags = r['tags'] as Json[];
  const hosted = r['hosted'] === true;
  const canDelete = r['canDelete'] === true;
  const selected = new Set<string>();
  const status = h('div', { 'aria-live': 'polite' });
  const deleteButton = h('button', { type: 'button', class: 'danger', disabled: true, 'data-test': 'delete-selected', onclick: () => void preview('tags') }, 'Delete selected…') as HTMLButtonElement;
  // The manifests the selected tags name, by digest: each goes with every tag that names it.
  const manifestsButton = h('button', { type: 'button', class: 'danger', disabled: true, 'data-test': 'delete-manifests', onclick: () => void preview('manifests') }, 'Delete their manifests…') as HTMLButtonElement;
  const digestOf = new Map(tags.map((t) => [String(t['tag']), String(t['digest'])]));
  const update = (): void => {
    deleteButton.disabled = selected.size === 0;
    manifestsButton.disabled = selected.size === 0;
    deleteButton.textContent = selected.size === 0 ? 'Delete selected…' : `Delete ${selected.size} selected…`;
  };
  const preview = async (mode: 'tags' | 'manifests'): Promise<void> => {
    const refs = mode === 'tags' ? [...selected] : [...new Set([...selected].map((t) => digestOf.get(t) ?? ''))].filter((d) => d !== '');
    const what = mode === 'tags' ? `tag${refs.length > 1 ? 's' : ''}` : `manifest${refs.length > 1 ? 's' : ''} (with every tag that names ${refs.length > 1 ? 'them' : 'it'})`;
    try {
      const plan = await api<Json>('/delete', { method: 'POST', body: { name: r['repository'], upstream: r['upstream'], references: refs, dryRun: true } });
      const kept = plan['kept'] as { reference: string; reasons: string[] }[];
      const panel = h('section', { class: 'card confirm', role: 'alertdialog', 'aria-labelledby': 'confirm-title', 'data-test': 'confirm' },
        h('h2', { id: 'confirm-title' }, `Delete ${refs.length} ${what} from ${String(r['repository'])}?`),
        h('ul', { class: 'list' }, ...refs.map((x) => h('li', {}, h('code', {}, x)))),
        kept.length > 0 ? h('div', {}, h('p', {}, mode === 'tags' ? 'The tags go, but content they point at stays where something else holds it:' : 'These go, but content they name stays where something else holds it:'),
          h('ul', { class: 'list', 'data-test': 'kept' }, ...kept.map((k) => h('li', {}, h('code', {}, k.reference), ` — ${k.reasons.join('; ')}`)))) : null,
        h('p', { class: 'muted', 'data-test': 'delete-note' }, hosted
          ? 'This repository is hosted here: nothing fetches deleted tags again, they are gone until pushed again. Layers another manifest uses stay; garbage collection removes what nothing references after its grace period.'
          : 'Layers that another cached image uses are always kept. The mirror fetches deleted content again on the next pull.'),
        h('div', { class: 'row' },
          h('button', { type: 'button', class: 'danger', 'data-test': 'confirm-delete', onclick: () => void run(refs) }, `Delete ${refs.length}`),
          h('button', { type: 'button', onclick: () => status.replaceChildren() }, 'Cancel')));
      status.replaceChildren(panel);
      (panel.querySelector('button') as HTMLButtonElement).focus();
    } catch (err) {
      status.replaceChildren(errorBox(err));
    }
  };
  const run = async (refs: string[]): Promise<void> => {
    try {
      const res = await api<Json>('/delete', { method: 'POST', body: { name: r['repository'], upstream: r['upstream'], references: refs } });
      const results = res['results'] as Json[];
      toast(`Deleted ${results.filter((x) => x['deleted'] === true).length} of ${refs.length}`);
      await route();
    } catch (err) {
      status.replaceChildren(errorBox(err));
    }
  };
  const kindBadge = (k: string): HTMLElement => badge({ image: 'image', index: 'index', 'docker-list': 'Docker list', 'buildkit-cache': 'BuildKit cache', artifact: 'artifact' }[k] ?? k);
  render(
    h('p', {}, h('a', { href: '#/repositories' }, '← Repositories')),
    h('h1', {}, String(r['repository'])),
    hosted
      ? h('p', { class: 'muted' }, badge('hosted', 'ok'), ` pushed here · ${tags.length} tags · ${bytes(r['bytes'])} · last pushed ${when(r['lastPushed'])}`)
      : h('p', { class: 'muted' }, `${String(r['upstream'])} · ${tags.length} tags · ${bytes(r['bytes'])} · last pulled ${when(r['lastPulled'])}`, r['pinned'] === true ? badge('pinned', 'ok') : null),
    canDelete ? h('div', { class: 'row' }, deleteButton, manifestsButton) : null,
    status,
    h('div', { class: 'scroll' }, h('table', { 'data-test': 'tags' },
      h('thead', {}, h('tr', {}, canDelete ? h('th', {}, h('span', { class: 'muted' }, 'Select')) : null, h('th', {}, 'Tag'), h('th', {}, 'Kind'), h('th', { class: 'hide-narrow' }, 'Platforms'), h('th', { class: 'num' }, 'Size'),
        ...(hosted ? [h('th', { class: 'hide-narrow' }, 'Pushed')] : [h('th', { class: 'hide-narrow' }, 'Last pulled'), h('th', { class: 'hide-narrow' }, 'Checked upstream')]))),
      h('tbody', {}, ...tags.map((t) => {
        const tag = String(t['tag']);
        const box = canDelete ? h('input', { type: 'checkbox', id: `sel-${tag}`, 'aria-label': `select ${tag}`, onchange: (e: Event) => {
          if ((e.target as HTMLInputElement).checked) selected.add(tag);
          else selected.delete(tag);
          update();
        } }) : null;
        return h('tr', { 'data-tag': tag },
          canDelete ? h('td', {}, box) : null,
          h('td', {}, h('a', { href: manifestLink(String(r['repository']), String(r['upstream']), String(t['digest'])) }, tag), h('div', { class: 'muted' }, h('code', {}, shortDigest(t['digest']))),
            t['pinned'] === true ? badge('pinned', 'ok') : null, t['stale'] === true ? badge('stale', 'warn') : null),
          h('td', {}, kindBadge(String(t['kind']))),
          h('td', { class: 'hide-narrow' }, ...(t['platforms'] as string[]).map((p) => badge(p))),
          h('td', { class: 'num' }, bytes(t['imageSize'] ?? t['size'])),
          ...(hosted ? [h('td', { class: 'hide-narrow' }, when(t['pushedAt']))]
            : [h('td', { class: 'hide-narrow' }, when(t['lastPulled'])), h('td', { class: 'hide-narrow' }, when(t['lastChecked']))]));
      })))),
    r['truncated'] === true ? h('p', { class: 'muted' }, 'Only the first 500 tags are shown.') : null,
  );
}

async function manifest(spec: string, params: URLSearchParams): Promise<void> {
  const at = spec.lastIndexOf('@');
  const name = spec.slice(0, at);
  const digest = spec.slice(at + 1);
  const upstream = params.get('upstream') ?? '';
  const m = await api<Json>(`/manifest?${new URLSearchParams({ name, digest, ...(upstream ? { upstream } : {}) }).toString()}`);
  const repo = String(m['repository']);
  const up = String(m['upstream']);
  const platforms = m['platforms'] as Json[];
  const layers = m['layers'] as Json[];
  const cfg = m['imageConfig'] as Json | null;
  const pull = m['pull'] as Record<string, string>;
  const referrers = m['referrers'] as Json[] | null;
  const subject = m['subject'] as Json | null;
  const dl = (pairs: [string, Child][]): HTMLElement => h('dl', { class: 'kv' }, ...pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  render(
    h('p', {}, h('a', { href: repoLink(repo, up) }, `← ${repo}`)),
    h('h1', {}, `${repo}@${shortDigest(m['digest'])}`, m['hosted'] === true ? badge('hosted', 'ok') : null),
    dl([
      ['Kind', badge(String(m['kind']))],
      ['Media type', h('code', {}, String(m['mediaType']))],
      ['Digest', h('code', {}, String(m['digest']))],
      ['Tags', (m['tags'] as string[]).join(', ') || '–'],
      ['Size', bytes(m['size'])],
      ...(m['artifactType'] ? [['Artifact type', h('code', {}, String(m['artifactType']))] as [string, Child]] : []),
      ...(subject ? [['Refers to', subject['cached'] === true
        ? h('a', { href: manifestLink(repo, up, String(subject['digest'])), 'data-test': 'subject' }, h('code', {}, shortDigest(subject['digest'])))
        : h('code', { 'data-test': 'subject' }, shortDigest(subject['digest']))] as [string, Child]] : []),
    ]),
    h('h2', {}, 'Pull'),
    h('div', { 'data-test': 'pull' }, ...Object.entries(pull).map(([client, cmd]) => h('div', { class: 'row' }, h('span', { class: 'badge' }, client), h('code', {}, cmd), copyButton(cmd, `copy the ${client} command`)))),
    platforms.length > 0 ? h('section', {},
      h('h2', {}, 'Platforms'),
      h('div', { class: 'scroll' }, h('table', { 'data-test': 'platforms' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Platform'), h('th', {}, 'Manifest'), h('th', { class: 'num' }, 'Size'))),
        h('tbody', {}, ...platforms.map((p) => h('tr', {},
          h('td', {}, String(p['platform'] ?? p['annotation'] ?? 'none')),
          h('td', {}, p['cached'] === true ? h('a', { href: manifestLink(repo, up, String(p['digest'])) }, h('code', {}, shortDigest(p['digest']))) : h('span', {}, h('code', {}, shortDigest(p['digest'])), ' ', badge('not cached'))),
          h('td', { class: 'num' }, bytes(p['size'])))))))) : null,
    cfg ? h('section', { 'data-test': 'config' },
      h('h2', {}, 'Config'),
      dl([
        ['Created', String(cfg['created'] ?? '–')],
        ['Platform', `${String(cfg['os'] ?? '?')}/${String(cfg['architecture'] ?? '?')}`],
        ['Entrypoint', h('code', {}, JSON.stringify(cfg['entrypoint']))],
        ['Cmd', h('code', {}, JSON.stringify(cfg['cmd']))],
        ['Env', h('div', {}, ...(cfg['env'] as string[]).map((e) => h('div', {}, h('code', {}, e))))],
        ['Labels', h('div', {}, ...Object.entries(cfg['labels'] as Record<string, string>).map(([k, v]) => h('div', {}, h('code', {}, `${k}=${v}`))))],
      ])) : null,
    layers.length > 0 ? h('section', {},
      h('h2', {}, 'Layers'),
      h('div', { class: 'scroll' }, h('table', { 'data-test': 'layers' },
        h('thead', {}, h('tr', {}, h('th', {}, '#'), h('th', {}, 'Digest'), h('th', { class: 'hide-narrow' }, 'Media type'), h('th', { class: 'num' }, 'Size'))),
        h('tbody', {}, ...layers.map((l, i) => h('tr', {},
          h('td', {}, String(i + 1)),
          h('td', {}, h('code', {}, shortDigest(l['digest'])), l['cached'] === true ? null : badge('not cached')),
          h('td', { class: 'hide-narrow' }, h('code', {}, String(l['mediaType'] ?? ''))),
          h('td', { class: 'num' }, bytes(l['size'])))))))) : null,
    referrers !== null ? h('section', {},
      h('h2', {}, 'Referrers'),
      referrers.length === 0 ? h('p', { class: 'muted' }, 'Nothing in this repository refers to this manifest (no signatures, SBOMs or attestations pushed for it).') :
        h('div', { class: 'scroll' }, h('table', { 'data-test': 'referrers' },
          h('thead', {}, h('tr', {}, h('th', {}, 'Artifact type'), h('th', {}, 'Digest'), h('th', { class: 'num' }, 'Size'), h('th', { class: 'hide-narrow' }, 'Annotations'))),
          h('tbody', {}, ...referrers.map((x) => h('tr', {},
            h('td', {}, h('code', {}, String(x['artifactType'] ?? x['mediaType']))),
            h('td', {}, h('a', { href: manifestLink(repo, up, String(x['digest'])) }, h('code', {}, shortDigest(x['digest'])))),
            h('td', { class: 'num' }, bytes(x['size'])),
            h('td', { class: 'hide-narrow' }, ...Object.entries(x['annotations'] as Record<string, string>).map(([k, v]) => h('div', {}, h('code', {}, `${k}=${v}`)))))))))) : null,
    cfg && (cfg['history'] as Json[]).length > 0 ? h('section', {},
      h('h2', {}, 'History'),
      h('ol', { class: 'list', 'data-test': 'history' }, ...(cfg['history'] as Json[]).map((s) => h('li', {}, h('code', {}, String(s['createdBy'] || '(no command)')), s['emptyLayer'] === true ? badge('no layer') : null)))) : null,
    h('details', {}, h('summary', {}, 'Raw JSON'), h('pre', {}, prettyJson(String(m['raw'])))),
  );
}

function prettyJson(raw: string): string {
  try {
    return JSON.stringify(JSON.parse(raw), null, 2);
  } catch {
    return raw;
  }
}

async function actions(): Promise<void> {
  const pw = await api<Json>('/prewarm');
  const admin = me?.admin === true;
  const out = h('div', { 'aria-live': 'polite', 'data-test': 'action-result' });
  const sections: Child[] = [h('h1', {}, 'Actions')];
  if (!admin) sections.push(h('p', { class: 'muted', 'data-test': 'no-admin' }, 'Purge, garbage collection and pre-warm runs need an admin rule in auth.policy.'));
  if (admin) {
    const pattern = h('input', { type: 'text', id: 'purge-pattern', placeholder: 'library/* or ** for everything' }) as HTMLInputElement;
    const purge = async (dryRun: boolean): Promise<void> => {
      try {
        const res = await api<Json>('/purge', { method: 'POST', body: { pattern: pattern.value.trim(), dryRun } });
        const repos = res['repositories'] as Json[];
        out.replaceChildren(h('section', { class: `card${dryRun ? ' confirm' : ''}` },
          h('h2', {}, dryRun ? `Purge would remove ${repos.length} repositories` : `Purged ${repos.length} repositories`),
          h('p', {}, `${String(res['manifests'])} manifests, ${String(res['blobs'])} blobs, ${bytes(res['bytes'])}; shared content another repository holds stays.`),
          h('ul', { class: 'list' }, ...repos.slice(0, 50).map((r) => h('li', {}, String(r['repository'])))),
          dryRun && repos.length > 0 ? h('button', { type: 'button', class: 'danger', onclick: () => void purge(false) }, `Purge ${repos.length} repositories`) : null));
      } catch (err) {
        out.replaceChildren(errorBox(err));
      }
    };
    const gc = async (dryRun: boolean): Promise<void> => {
      try {
        const res = await api<Json>('/gc', { method: 'POST', body: { dryRun } });
        out.replaceChildren(h('section', { class: 'card' },
          h('h2', {}, dryRun ? 'Garbage collection would remove' : 'Garbage collection removed'),
          h('p', {}, `${String(res['blobs'])} blobs (${bytes(res['bytes'])}), ${String(res['manifests'])} manifests, ${String(res['records'])} stale records, ${String(res['spoolFiles'])} leftover spool files`),
          dryRun && (res['blobs'] as number) + (res['manifests'] as number) + (res['records'] as number) > 0 ? h('button', { type: 'button', class: 'danger', onclick: () => void gc(false) }, 'Run garbage collection') : null));
      } catch (err) {
        out.replaceChildren(errorBox(err));
      }
    };
    sections.push(
      h('section', { class: 'card' },
        h('h2', {}, 'Purge from cache'),
        h('div', { class: 'search' }, h('label', { for: 'purge-pattern' }, 'Repositories'), pattern,
          h('button', { type: 'button', class: 'danger', 'data-test': 'purge', onclick: () => void purge(true) }, 'Purge…'))),
      h('section', { class: 'card' },
        h('h2', {}, 'Garbage collection'),
        h('button', { type: 'button', 'data-test': 'gc-preview', onclick: () => void gc(true) }, 'Preview (dry run)')),
    );
  }
  sections.push(out);
  const entries = (pw['entries'] as Json[] | undefined) ?? [];
  const runNow = async (ref: string): Promise<void> => {
    try {
      const res = await api<Json>('/prewarm', { method: 'POST', body: { ref } });
      toast(res['queued'] === true ? `Queued ${ref}` : `${ref} is already queued`);
    } catch (err) {
      toast(err instanceof Error ? err.message : String(err));
    }
  };
  sections.push(
    h('h2', {}, 'Pre-warm'),
    pw['running'] === false ? h('p', { class: 'muted' }, 'Pre-warm is not running in this process.') :
      entries.length === 0 ? h('p', { class: 'muted' }, 'No images in prewarm.images.') :
        h('div', { class: 'scroll' }, h('table', { 'data-test': 'prewarm' },
          h('thead', {}, h('tr', {}, h('th', {}, 'Image'), h('th', { class: 'hide-narrow' }, 'Schedule'), h('th', {}, 'Last result'), h('th', { class: 'hide-narrow' }, 'Next run'), h('th', { class: 'num' }, 'Pulls spent'), admin ? h('th', {}, h('span', { class: 'muted' }, 'Run')) : null)),
          h('tbody', {}, ...entries.map((e) => h('tr', {},
            h('td', {}, h('code', {}, String(e['ref']))),
            h('td', { class: 'hide-narrow' }, h('code', {}, String(e['schedule'] ?? 'one-off'))),
            h('td', {}, e['lastResult'] === null ? '–' : badge(String(e['lastResult']), e['lastResult'] === 'failed' ? 'bad' : 'ok'), ' ', when(e['lastRunAt'])),
            h('td', { class: 'hide-narrow' }, when(e['nextRunAt'])),
            h('td', { class: 'num' }, `${String(e['pullsSpent'])} (total ${String(e['pullsSpentTotal'])})`),
            admin ? h('td', {}, h('button', { type: 'button', onclick: () => void runNow(String(e['ref'])) }, 'Run now')) : null))))),
  );
  render(...sections);
}

// ------------------------------------------------------------------ shell

function header(): void {
  const who = document.getElementById('who');
  if (!who || !me) return;
  const parts: Child[] = [];
  if (me.user) {
    parts.push(h('span', { 'data-test': 'user' }, me.user.name));
    parts.push(h('button', { type: 'button', onclick: () => void logout() }, 'Log out'));
  } else {
    parts.push(h('span', {}, me.mode === 'open' ? (me.admin ? 'No login · admin from this network' : 'No login · read-only') : ''));
  }
  who.replaceChildren(...parts.filter((p): p is Node => p instanceof Node));
}

async function logout(): Promise<void> {
  const res = await fetch('/ui/logout', { method: 'POST', headers: { 'x-csrf-token': me?.csrf ?? '', 'content-type': 'application/json' }, credentials: 'same-origin', body: '{}' });
  const data = (await res.json().catch(() => ({}))) as { redirect?: string };
  location.href = data.redirect ?? '/ui/';
}

async function route(): Promise<void> {
  if (refreshTimer !== null) window.clearTimeout(refreshTimer);
  refreshTimer = null;
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path = '/', query = ''] = hash.split('?');
  const params = new URLSearchParams(query);
  const section = path.split('/')[1] ?? '';
  for (const a of document.querySelectorAll('nav a[data-nav]')) {
    const active = a.getAttribute('data-nav') === (section === '' ? 'overview' : section === 'repository' || section === 'manifest' ? 'repositories' : section);
    if (active) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  try {
    if (section === '') await overview();
    else if (section === 'repositories') await repositories(params);
    else if (section === 'repository') await repository(decodeURIComponent(path.slice('/repository/'.length)), params);
    else if (section === 'manifest') await manifest(decodeURIComponent(path.slice('/manifest/'.length)), params);
    else if (section === 'actions') await actions();
    else render(h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/' }, 'Overview')));
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    render(h('h1', {}, 'Something went wrong'), errorBox(err));
  }
}

async function start(): Promise<void> {
  try {
    me = await api<Me>('/me');
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    render(h('h1', {}, 'Berth'), errorBox(err));
    return;
  }
  header();
  window.addEventListener('hashchange', () => {
    void route().then(() => main().focus());
  });
  await route();
  document.body.setAttribute('data-ready', 'true');
}

void start();
