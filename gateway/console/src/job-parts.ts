import { ApiError, call, jobPath, type Deleted, type Job } from './api.js';
import { h, hidden } from './dom.js';
import { bytes, percent, timeLeft } from './format.js';
import { removeJob, type LiveJob } from './store.js';

/** What a person recognises a job by: the video's title or URL, or the uploaded file's name. */
export function jobTitle(job: Job): string {
  if (job.kind === 'download') {
    const title = job.result?.['title'];
    if (typeof title === 'string' && title.trim() !== '') return title;
    const url = job.request['url'];
    return typeof url === 'string' ? url : job.id;
  }
  const upload = job.request['upload'] as { original_name?: unknown } | undefined;
  return typeof upload?.original_name === 'string' && upload.original_name !== ''
    ? upload.original_name
    : 'uploaded file';
}

/** One line on what was asked: "360p from youtube.com", "normalize_volume, remove_noise → mp3". */
export function jobAsk(job: Job): string {
  if (job.kind === 'download') {
    const quality = String(job.request['quality'] ?? 'best');
    try {
      return `${quality} from ${new URL(String(job.request['url'])).host}`;
    } catch {
      return quality;
    }
  }
  const ops = Array.isArray(job.request['operations']) ? (job.request['operations'] as unknown[]) : [];
  return `${ops.join(', ')} → ${String(job.request['format'] ?? '')}`;
}

/** Status, progress bar and percentage, updated in place as events arrive. */
export class JobState {
  readonly el: HTMLElement;
  private readonly status = h('span', { class: 'status' });
  private readonly bar = h('progress', { max: 100, value: 0 });
  private readonly pct = h('span', { class: 'pct' });
  private readonly stage = h('span', { class: 'stage' });
  private readonly expiry = h('time', { class: 'expiry' });
  private expiresAt = '';

  constructor(label: string) {
    this.bar.setAttribute('aria-label', `Progress of ${label}`);
    this.el = h(
      'div',
      { class: 'job-state' },
      this.status,
      h('span', { class: 'meter' }, this.bar, this.pct),
      this.stage,
      this.expiry,
    );
  }

  update(job: LiveJob): void {
    this.status.textContent = job.status;
    this.status.dataset['status'] = job.status;
    this.el.dataset['status'] = job.status;
    this.bar.value = job.progress;
    this.pct.textContent = percent(job.progress);
    this.stage.textContent = job.status === 'processing' ? (job.stage ?? '') : (job.note ?? '');
    this.expiresAt = job.expires_at;
    this.expiry.dateTime = job.expires_at;
    this.expiry.title = `expires ${new Date(job.expires_at).toLocaleString()}`;
    this.tick();
  }

  /** The time left moves with the clock, not with events. */
  tick(): void {
    if (this.expiresAt) this.expiry.textContent = timeLeft(this.expiresAt);
  }
}

export function downloadLink(job: Job, label = 'Download'): HTMLAnchorElement {
  return h(
    'a',
    { class: 'button', href: `${jobPath(job.id)}/file`, download: '' },
    label,
    hidden(` ${job.id}`),
  );
}

/** Asks, then deletes the job and its files; resolves to a sentence for the page, or throws. */
export async function deleteJob(id: string): Promise<string | null> {
  if (!window.confirm(`Delete job ${id} and its files?`)) return null;
  try {
    const { body } = await call<Deleted>('DELETE', jobPath(id));
    removeJob(id);
    const files = body.files.length === 1 ? '1 file' : `${body.files.length} files`;
    return `Deleted ${id}: ${files}, ${bytes(body.bytes_freed)} freed.`;
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 410)) {
      removeJob(id);
      return `Job ${id} was already gone.`;
    }
    throw err;
  }
}
