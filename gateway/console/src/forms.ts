import { ApiError, call, upload, type Job } from './api.js';
import { byId, h } from './dom.js';
import { bytes, capital, percent } from './format.js';
import { askForKey } from './key.js';
import { putJob } from './store.js';

/** What a submission answered: the job, new (202) or from the cache (200, `cache_hit`). */
function showAnswer(box: HTMLElement, job: Job): void {
  const link = h('a', { href: `#/jobs/${job.id}` }, job.id);
  const line = job.cache_hit
    ? h(
        'p',
        { class: 'answer-hit' },
        h('strong', {}, 'Cache hit'),
        `: this job already exists (${job.status}): `,
        link,
      )
    : h('p', { class: 'answer-new' }, h('strong', {}, 'New job'), ' queued: ', link);
  const download =
    job.status === 'completed'
      ? h('a', { class: 'button', href: `/jobs/${job.id}/file`, download: '' }, 'Download the file')
      : null;
  box.replaceChildren(line, download ?? '');
}

/** An error in words a person can act on, announced at once (role=alert), with its code. */
export function showError(box: HTMLElement, err: unknown): void {
  let sentence: string;
  let code = '';
  if (err instanceof ApiError) {
    code = err.code;
    // The gateway's messages name the field at fault ("url is not ..."): say who refused.
    if (err.status === 401) sentence = askForKey(err);
    else if (err.status >= 400 && err.status < 500) sentence = `Not accepted: ${err.message}.`;
    else if (err.status >= 500) sentence = `The gateway could not do it: ${err.message}.`;
    else sentence = `${capital(err.message)}.`;
  } else sentence = `${capital(err instanceof Error ? err.message : String(err))}.`;
  box.replaceChildren(
    h(
      'p',
      { class: 'error', role: 'alert' },
      sentence,
      code ? h('span', { class: 'code' }, ` (${code})`) : '',
    ),
  );
}

function guard(form: HTMLFormElement, run: () => Promise<void>): void {
  let busy = false;
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (busy) return;
    busy = true;
    form.setAttribute('aria-busy', 'true');
    run().finally(() => {
      busy = false;
      form.removeAttribute('aria-busy');
    });
  });
}

export function initDownloadForm(onSubmitted: (job: Job) => void): void {
  const form = byId('download-form', HTMLFormElement);
  const url = byId('download-url', HTMLInputElement);
  const quality = byId('download-quality', HTMLSelectElement);
  const box = byId('download-answer', HTMLDivElement);
  guard(form, async () => {
    const value = url.value.trim();
    if (value === '') {
      showError(box, new Error('enter the URL of a video or of a page that has one'));
      url.focus();
      return;
    }
    box.replaceChildren(h('p', {}, 'Submitting…'));
    try {
      const { body } = await call<Job>('POST', '/download', { url: value, quality: quality.value });
      putJob(body);
      showAnswer(box, body);
      onSubmitted(body);
    } catch (err) {
      showError(box, err);
      if (err instanceof ApiError && err.status === 400) url.focus();
    }
  });
}

export function initNormalizeForm(onSubmitted: (job: Job) => void): void {
  const form = byId('normalize-form', HTMLFormElement);
  const file = byId('normalize-file', HTMLInputElement);
  const format = byId('normalize-format', HTMLSelectElement);
  const target = byId('normalize-target', HTMLInputElement);
  const loudness = byId('op-normalize_volume', HTMLInputElement);
  const box = byId('normalize-answer', HTMLDivElement);
  const maxBytes = Number(document.body.dataset['maxUploadBytes'] ?? Infinity);
  // The target only means something to normalize_volume.
  const syncTarget = () => (target.disabled = !loudness.checked);
  loudness.addEventListener('change', syncTarget);
  syncTarget();

  guard(form, async () => {
    const chosen = file.files?.[0];
    if (!chosen) {
      showError(box, new Error('choose an audio or video file to normalize'));
      file.focus();
      return;
    }
    if (chosen.size > maxBytes) {
      showError(
        box,
        new Error(`the file is ${bytes(chosen.size)}; this gateway takes up to ${bytes(maxBytes)}`),
      );
      file.focus();
      return;
    }
    const data = new FormData();
    data.append('file', chosen, chosen.name);
    for (const op of form.querySelectorAll<HTMLInputElement>('input[name="operations[]"]:checked'))
      data.append('operations[]', op.value);
    // Empty: the gateway picks the format that fits the operations.
    if (format.value) data.append('format', format.value);
    if (loudness.checked && target.value.trim() !== '') data.append('target_lufs', target.value.trim());
    const bar = h('progress', { max: 100, value: 0, 'aria-label': 'Upload progress' });
    const pct = h('span', {}, percent(0));
    box.replaceChildren(h('p', { class: 'uploading' }, `Uploading ${chosen.name} `, bar, ' ', pct));
    try {
      const { body } = await upload<Job>('/normalize', data, (fraction) => {
        bar.value = fraction * 100;
        pct.textContent = percent(fraction * 100);
      });
      putJob(body);
      showAnswer(box, body);
      onSubmitted(body);
    } catch (err) {
      showError(box, err);
    }
  });
}
