/**
 * The UI's static files, served by Berth itself (no external fetches): one HTML shell, one
 * style sheet (styles.ts) and one browser module compiled by the project's tsc from
 * static/app.ts. Asset URLs carry a content hash, so they are cached for a year (`immutable`)
 * and a new release is picked up at once; the shell is never cached. Every UI response carries a
 * strict Content-Security-Policy: only this origin, no inline script or style, no framing.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { STYLES } from './styles.js';

export const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** Headers every /ui/ response carries. */
export const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
  'x-frame-options': 'DENY',
};

export interface Asset {
  path: string;
  type: string;
  body: Buffer;
}

export interface UiAssets {
  html: string;
  byPath: Map<string, Asset>;
}

function hashed(name: string, ext: string, body: Buffer, type: string): Asset {
  const hash = createHash('sha256').update(body).digest('hex').slice(0, 16);
  return { path: `${name}.${hash}.${ext}`, type, body };
}

/** Load the compiled browser module and build the shell that names the hashed files. */
export async function loadAssets(): Promise<UiAssets> {
  const compiled = await readFile(new URL('./static/app.js', import.meta.url), 'utf8');
  // The source map is not shipped to browsers; drop the comment that would ask for it.
  const js = hashed('app', 'js', Buffer.from(compiled.replace(/\n\/\/# sourceMappingURL=.*$/m, '\n'), 'utf8'), 'text/javascript; charset=utf-8');
  const css = hashed('style', 'css', Buffer.from(STYLES, 'utf8'), 'text/css; charset=utf-8');
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>Berth</title>
<link rel="stylesheet" href="/ui/assets/${css.path}">
<script type="module" src="/ui/assets/${js.path}"></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <a class="brand" href="#/">Berth</a>
  <nav aria-label="Main">
    <a href="#/" data-nav="overview">Overview</a>
    <a href="#/repositories" data-nav="repositories">Repositories</a>
    <a href="#/actions" data-nav="actions">Actions</a>
  </nav>
  <div class="who" id="who"></div>
</header>
<main id="main" tabindex="-1"><p class="muted">Loading…</p></main>
<div id="toast" role="status" aria-live="polite"></div>
</body>
</html>
`;
  return { html, byPath: new Map([js, css].map((a) => [a.path, a])) };
}
