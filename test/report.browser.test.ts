import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { writeReport } from '../src/export/report/report.js';
import { searchResultFixture } from './support/searchResult.js';

// Debian's chromium (installed by .ci/run), never a downloaded browser.
const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const dir = mkdtempSync(join(tmpdir(), 'mesh-search-browser-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the report in a browser', () => {
  it('opens without console errors, shows one point per Pareto plan, and screenshots', async () => {
    const result = searchResultFixture();
    const report = join(dir, 'report.html');
    await writeReport(result, report);
    const context = await chromium.launchPersistentContext(join(dir, 'profile'), {
      executablePath: CHROMIUM, args: ARGS, headless: true, viewport: { width: 1280, height: 900 },
    });
    try {
      const page = await context.newPage();
      const errors: string[] = [];
      page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
      page.on('pageerror', (e) => errors.push(e.message));
      page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()}`));
      await page.goto(pathToFileURL(report).href, { waitUntil: 'load' });
      const points = page.locator('#pareto svg g.pareto_marks > path');
      expect(await points.count()).toBe(result.pareto.length);
      const box = await points.first().boundingBox();
      expect(box && box.width > 0 && box.height > 0).toBe(true);
      expect(await page.locator('#mesh svg').count()).toBe(1);
      expect(await page.locator('table.plans tbody tr').count()).toBe(result.top.length);
      const shot = join(dir, 'report.png');
      await page.screenshot({ path: shot, fullPage: true });
      const png = readFileSync(shot);
      expect(png.subarray(1, 4).toString()).toBe('PNG');
      expect(statSync(shot).size).toBeGreaterThan(20_000);
      expect(errors).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
