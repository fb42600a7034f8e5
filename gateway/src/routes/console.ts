import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Router } from 'express';
import {
  DEFAULT_16K_FORMAT,
  DEFAULT_OUTPUT_FORMAT,
  OPERATIONS,
  OUTPUT_FORMATS,
  QUALITIES,
  TARGET_LUFS_RANGE,
  type Config,
} from '@media-jobs/libs';
import { CONSOLE_CONTENT_SECURITY_POLICY, contentSecurityPolicy } from '../security-headers.js';

/**
 * What `gateway/console/build.ts` writes (esbuild, at build time). The same relative path
 * works from `src/routes/` (tsx, tests) and from `dist/routes/` (the built gateway).
 */
const CONSOLE_DIR = fileURLToPath(new URL('../../dist/console/', import.meta.url));
const ASSETS = new Set(['app.js', 'app.js.map', 'app.css', 'app.css.map', 'icon.svg']);

const QUALITY_LABELS: Partial<Record<string, string>> = {
  best: 'best available',
  worst: 'smallest available',
  audio: 'audio only',
};
const OPERATION_LABELS: Partial<Record<string, string>> = {
  normalize_volume: 'Normalize loudness',
  remove_noise: 'Remove noise',
  convert_to_mono: 'Convert to mono',
  highpass_filter: 'High-pass filter (cut rumble)',
  sample_rate_16k: 'Resample to 16 kHz',
};

const escapeHtml = (text: string): string =>
  text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c,
  );

const option = (value: string, label: string, selected: boolean): string =>
  `<option value="${escapeHtml(value)}"${selected ? ' selected' : ''}>${escapeHtml(label)}</option>`;

function operationBox(op: string): string {
  const id = `op-${op}`;
  const checked = op === 'normalize_volume' ? ' checked' : '';
  return `<div class="check"><input type="checkbox" id="${id}" name="operations[]" value="${escapeHtml(op)}"${checked}>
          <label for="${id}">${escapeHtml(OPERATION_LABELS[op] ?? op.replaceAll('_', ' '))}</label></div>`;
}

type PageConfig = Pick<Config, 'apiKeys' | 'maxUploadBytes' | 'normalizeTargetLufs'>;

/**
 * The console's one page. The forms' choices come from the constants the API validates
 * with, so the page never offers what the gateway refuses; the script adds the behaviour.
 */
export function consolePage(config: PageConfig): string {
  const keys = config.apiKeys.length > 0 ? 'required' : 'off';
  const maxMb = Math.round((config.maxUploadBytes / 1024 / 1024) * 10) / 10;
  return `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="color-scheme" content="light dark">
  <title>media-jobs console</title>
  <link rel="icon" href="/console/icon.svg" type="image/svg+xml">
  <link rel="stylesheet" href="/console/app.css">
  <script src="/console/app.js" defer></script>
</head>
<body data-api-keys="${keys}" data-max-upload-bytes="${config.maxUploadBytes}">
  <a class="skip" href="#main">Skip to content</a>
  <header class="top">
    <div class="bar">
      <h1><a href="#/">media-jobs</a></h1>
      <nav aria-label="Site"><a href="#/">Jobs</a> <a href="/docs">API docs</a></nav>
    </div>
    <section id="key-panel" class="key-panel" aria-label="API key" hidden>
      <form id="key-form" class="key-form" novalidate>
        <label for="api-key">API key</label>
        <input id="api-key" name="key" type="password" autocomplete="off" spellcheck="false" required>
        <button type="submit">Use key</button>
        <p class="hint">Needed to submit and delete jobs. Kept for this browser session only.</p>
      </form>
      <div id="key-set" class="key-set" hidden>
        <span>API key set for this session.</span>
        <button type="button" id="key-forget" class="secondary">Forget key</button>
      </div>
      <p id="key-message" class="message" role="status"></p>
    </section>
  </header>
  <main id="main" tabindex="-1">
    <div id="home-view">
      <div class="forms">
        <form id="download-form" class="card" novalidate aria-labelledby="download-heading">
          <h2 id="download-heading">Download a video</h2>
          <div class="field">
            <label for="download-url">Video or page URL</label>
            <input id="download-url" name="url" type="url" inputmode="url" autocomplete="off" spellcheck="false" placeholder="https://www.youtube.com/watch?v=…" required>
          </div>
          <div class="field">
            <label for="download-quality">Quality</label>
            <select id="download-quality" name="quality">
              ${QUALITIES.map((q) => option(q, QUALITY_LABELS[q] ?? q, q === 'best')).join('\n              ')}
            </select>
          </div>
          <div class="actions"><button type="submit">Download</button></div>
          <div class="answer" id="download-answer" role="status" aria-live="polite"></div>
        </form>
        <form id="normalize-form" class="card" novalidate aria-labelledby="normalize-heading">
          <h2 id="normalize-heading">Normalize audio</h2>
          <div class="field">
            <label for="normalize-file">Audio or video file <span class="hint">(up to ${maxMb} MB)</span></label>
            <input id="normalize-file" name="file" type="file" accept="audio/*,video/*" required>
          </div>
          <fieldset class="field">
            <legend>Operations</legend>
            ${OPERATIONS.map(operationBox).join('\n            ')}
          </fieldset>
          <div class="row">
            <div class="field">
              <label for="normalize-format">Output format</label>
              <select id="normalize-format" name="format" aria-describedby="normalize-format-hint">
                ${option('', 'automatic', true)}
                ${OUTPUT_FORMATS.map((f) => option(f, f, false)).join('\n                ')}
              </select>
              <span class="hint" id="normalize-format-hint">automatic: ${DEFAULT_OUTPUT_FORMAT}, or ${DEFAULT_16K_FORMAT} with 16 kHz</span>
            </div>
            <div class="field">
              <label for="normalize-target">Target loudness (LUFS)</label>
              <input id="normalize-target" name="target_lufs" type="number" inputmode="decimal" step="0.1" min="${TARGET_LUFS_RANGE.min}" max="${TARGET_LUFS_RANGE.max}" value="${config.normalizeTargetLufs}">
            </div>
          </div>
          <div class="actions"><button type="submit">Normalize</button></div>
          <div class="answer" id="normalize-answer" role="status" aria-live="polite"></div>
        </form>
      </div>
      <section class="jobs" aria-labelledby="jobs-heading">
        <div class="list-head">
          <h2 id="jobs-heading" tabindex="-1">Recent jobs</h2>
          <div class="filters">
            <label for="filter-kind">Kind</label>
            <select id="filter-kind">
              <option value="">all</option><option value="download">downloads</option><option value="normalize">normalizations</option>
            </select>
            <button type="button" id="refresh" class="secondary">Refresh</button>
          </div>
        </div>
        <div id="list-message" class="message" role="status"></div>
        <ul id="job-list" class="job-list"></ul>
        <div class="actions"><button type="button" id="more" class="secondary" hidden>Show older jobs</button></div>
      </section>
    </div>
    <div id="job-view" hidden></div>
  </main>
  <noscript><p class="message">The console needs JavaScript. The API works without it: see <a href="/docs">/docs</a>.</p></noscript>
</body>
</html>
`;
}

const NOT_BUILT = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>media-jobs console</title></head>
<body><h1>The web console is not built</h1>
<p>Run <code>npm run build:console</code> (or <code>npm run build</code>) and reload. The API works without it: see <a href="/docs">/docs</a>.</p>
</body></html>
`;

/** `GET /` (the web console) and its assets under `/console/`, built by esbuild into dist/console. */
export function consoleRoutes(config: PageConfig): Router {
  const router = Router();
  const page = consolePage(config);
  let built = false;
  router.get('/', contentSecurityPolicy(CONSOLE_CONTENT_SECURITY_POLICY), (_req, res) => {
    built ||= existsSync(join(CONSOLE_DIR, 'app.js'));
    res.setHeader('Cache-Control', 'no-cache');
    res.type('html').send(built ? page : NOT_BUILT);
  });
  router.get('/console/:asset', (req, res, next) => {
    const asset = req.params.asset;
    if (!ASSETS.has(asset)) return next();
    // Revalidated on every load (ETag), so a rebuilt console is picked up at once.
    res.sendFile(join(CONSOLE_DIR, asset), { headers: { 'Cache-Control': 'no-cache' } }, (err) => {
      if (err && !res.headersSent) next();
    });
  });
  return router;
}
