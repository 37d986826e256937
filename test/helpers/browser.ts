// A real browser for the UI tests: Debian's `chromium` driven by npm `playwright-core`, headless,
// with the flags that keep it off the network and quiet on a build machine. Every request that
// leaves loopback is aborted and remembered, so a page that tries to load a font or script from
// the internet is seen (and fails fast instead of waiting on DNS).
import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage',
];

export const VIEWPORTS = {
  laptop: { width: 1280, height: 800 },
  phone: { width: 390, height: 844 },
} as const;

/** Where the UI tests save their screenshots (gitignored). */
export const SCREENSHOTS = process.env['BERTH_TEST_OUTPUT'] ?? join('tmp', 'test-output', 'ui');

/**
 * Screenshots of the page at each viewport, saved as `<name>-<w>x<h>.png`; on a phone the page
 * itself must never scroll sideways (wide tables scroll in their own box). Ends at the laptop size.
 */
export async function screenshotEachViewport(page: Page, name: string): Promise<void> {
  for (const [label, size] of Object.entries(VIEWPORTS)) {
    await page.setViewportSize(size);
    await page.waitForTimeout(50); // one layout pass after the resize
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 1, `${name} at ${label}: the page is ${overflow}px wider than the screen`);
    await page.screenshot({ path: join(SCREENSHOTS, `${name}-${size.width}x${size.height}.png`), fullPage: false });
  }
  await page.setViewportSize(VIEWPORTS.laptop);
}

/** Null when Debian's chromium is not installed (the caller skips with the package name). */
export async function chromiumMissing(): Promise<string | null> {
  try {
    await access(CHROMIUM);
    return null;
  } catch {
    return 'install the Debian package "chromium" (apt-get install -y chromium)';
  }
}

export interface TestBrowser {
  browser: Browser;
  /**
   * A fresh context (own cookies) with the viewport and colour scheme asked for. `intercept: false`
   * leaves requests alone: with interception on, Playwright answers CORS preflights itself, so a
   * test of CORS behaviour must turn it off (and then loads only loopback pages anyway).
   */
  context(opts?: { viewport?: { width: number; height: number }; colorScheme?: 'light' | 'dark'; intercept?: boolean }): Promise<BrowserContext>;
  /** URLs outside loopback that a page tried to load (all aborted). */
  external: string[];
  /** Console errors and page errors, with the page URL. */
  errors: string[];
  close(): Promise<void>;
}

export async function launchBrowser(): Promise<TestBrowser> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS, headless: true });
  const external: string[] = [];
  const errors: string[] = [];
  const contexts: BrowserContext[] = [];
  return {
    browser,
    external,
    errors,
    async context(opts = {}) {
      const ctx = await browser.newContext({ viewport: opts.viewport ?? VIEWPORTS.laptop, colorScheme: opts.colorScheme ?? 'light' });
      if (opts.intercept !== false) await ctx.route((url) => url.hostname !== '127.0.0.1' && url.hostname !== 'localhost', async (route) => {
        external.push(route.request().url());
        await route.abort();
      });
      ctx.on('page', (page: Page) => {
        page.on('pageerror', (err) => errors.push(`${page.url()}: ${err.message}`));
        page.on('console', (msg) => {
          if (msg.type() === 'error') errors.push(`${page.url()}: ${msg.text()}`);
        });
      });
      contexts.push(ctx);
      return ctx;
    },
    async close() {
      for (const c of contexts) await c.close().catch(() => undefined);
      await browser.close();
    },
  };
}
