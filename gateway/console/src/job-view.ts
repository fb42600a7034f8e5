import { ApiError, call, jobPath, type Job } from './api.js';
import { byId, h } from './dom.js';
import { bytes, capital, channels, clock, dateTime, duration, hertz, level, NONE, text } from './format.js';
import { showError } from './forms.js';
import { deleteJob, downloadLink, jobAsk, jobTitle, JobState } from './job-parts.js';
import { follow, type LiveEvent } from './live.js';
import { getJob, onJobChange, putJob, type LiveJob } from './store.js';

type Data = Record<string, unknown>;
const obj = (v: unknown): Data => (typeof v === 'object' && v !== null ? (v as Data) : {});

const MAX_EVENTS = 500;

/** A heading and what it heads, one block of the result's grid. */
const group = (title: string, ...content: Node[]): HTMLDivElement =>
  h('div', { class: 'group' }, h('h3', {}, title), ...content);

function facts(rows: [string, string | Node][]): HTMLDListElement {
  return h('dl', { class: 'facts' }, ...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function sourceLink(url: unknown): string | Node {
  if (typeof url !== 'string') return NONE;
  // Only web links become links; the text is shown as it was submitted.
  return /^https?:\/\//i.test(url)
    ? h('a', { href: url, rel: 'noreferrer noopener', target: '_blank' }, url)
    : url;
}

function downloadFacts(job: Job): Node[] {
  const r = obj(job.result);
  const size =
    typeof r['width'] === 'number' && typeof r['height'] === 'number'
      ? `${r['width']} × ${r['height']}`
      : NONE;
  const rows: [string, string | Node][] = [
    ['Source', sourceLink(job.request['url'])],
    ['Quality asked', text(job.request['quality'])],
  ];
  if (!job.result)
    return [
      group(
        'Media',
        facts(rows),
        h('p', { class: 'hint' }, 'The media facts appear when the download completes.'),
      ),
    ];
  rows.push(
    ['Title', text(r['title'])],
    ['Resolution', size],
    ['Duration', duration(r['duration_s'])],
    ['Video codec', text(r['video_codec'])],
    ['Audio codec', text(r['audio_codec'])],
    ['Container', text(r['container'])],
    ['File size', bytes(r['size_bytes'])],
    ['Format id', text(r['format_id'])],
    ['File', text(r['file'])],
  );
  return [group('Media', facts(rows))];
}

function loudnessTable(loudness: Data): Node[] {
  const before = obj(loudness['input']);
  const after = obj(loudness['output']);
  const row = (label: string, key: string, unit: string) =>
    h(
      'tr',
      {},
      h('th', { scope: 'row' }, label),
      h('td', {}, level(before[key], unit)),
      h('td', {}, level(after[key], unit)),
    );
  return [
    h(
      'table',
      { class: 'loudness' },
      h('caption', {}, 'Loudness before and after'),
      h(
        'thead',
        {},
        h('tr', {}, h('td', {}), h('th', { scope: 'col' }, 'Before'), h('th', { scope: 'col' }, 'After')),
      ),
      h(
        'tbody',
        {},
        row('Integrated', 'integrated_lufs', 'LUFS'),
        row('Loudness range', 'loudness_range_lu', 'LU'),
        row('True peak', 'true_peak_dbtp', 'dBTP'),
      ),
    ),
    facts([
      ['Target', level(loudness['target_lufs'], 'LUFS')],
      ['True-peak ceiling', level(loudness['true_peak_ceiling_dbtp'], 'dBTP')],
      ['Gain applied', level(loudness['gain_db'], 'dB', true)],
      ['Limiter', loudness['limiter'] === true ? 'yes' : loudness['limiter'] === false ? 'no' : NONE],
    ]),
  ];
}

function normalizeFacts(job: Job): Node[] {
  const upload = obj(job.request['upload']);
  const r = obj(job.result);
  const input = obj(r['input']);
  const asked: [string, string | Node][] = [
    ['File', text(upload['original_name'])],
    ['Size', bytes(upload['size'])],
    ['Asked', jobAsk(job)],
  ];
  if (job.request['target_lufs'] !== null && job.request['target_lufs'] !== undefined)
    asked.push(['Target loudness', level(job.request['target_lufs'], 'LUFS')]);
  if (!job.result)
    return [
      group(
        'Upload',
        facts(asked),
        h('p', { class: 'hint' }, 'Loudness and output facts appear when the job completes.'),
      ),
    ];
  asked.push(
    ['Container', text(input['container'])],
    ['Codec', text(input['codec'])],
    ['Sample rate', hertz(input['sample_rate'])],
    ['Channels', channels(input['channels'])],
    ['Duration', duration(input['duration_s'])],
    ['Had video', input['had_video'] === true ? 'yes (dropped)' : 'no'],
  );
  const loudness = r['loudness']
    ? loudnessTable(obj(r['loudness']))
    : [
        h(
          'p',
          { class: 'hint' },
          'Loudness is measured with normalize_volume, which this job did not ask for.',
        ),
      ];
  return [
    group('Loudness', ...loudness),
    group(
      'Output',
      facts([
        ['Format', text(r['format'])],
        ['Codec', text(r['codec'])],
        ['Sample rate', hertz(r['sample_rate'])],
        ['Channels', channels(r['channels'])],
        ['Duration', duration(r['duration_s'])],
        ['File size', bytes(r['size_bytes'])],
        ['File', text(r['file'])],
      ]),
    ),
    group('Input', facts(asked)),
  ];
}

function player(job: Job): Node | null {
  if (job.status !== 'completed') return null;
  const src = `${jobPath(job.id)}/file`;
  const video = job.kind === 'download' && typeof job.result?.['width'] === 'number';
  return video
    ? h('video', { controls: true, preload: 'metadata', playsinline: true, src })
    : h('audio', { controls: true, preload: 'none', src });
}

function eventSummary({ type, data }: LiveEvent): string {
  const err = obj(data['error']);
  switch (type) {
    case 'state':
      return `${String(data['status'])}, ${String(data['progress'])} %`;
    case 'queued':
      return data['reason'] === 'retry'
        ? `queued again (attempt ${String(data['attempt'])} failed: ${String(err['message'])})`
        : data['reason']
          ? `queued again (${String(data['reason']).replace('_', ' ')})`
          : 'queued';
    case 'cache_hit':
      return `asked again: cache hit (${String(data['status'])})`;
    case 'started':
      return `a worker started it (attempt ${String(data['attempt'])})`;
    case 'progress':
      return `${Math.floor(Number(data['progress']))} %${data['stage'] ? `, ${String(data['stage'])}` : ''}`;
    case 'completed':
      return `completed in ${duration(Number(data['duration_ms']) / 1000)}`;
    case 'failed':
      return `failed after ${String(data['attempts'])} attempt(s): ${String(err['message'])} (${String(err['code'])})`;
    case 'deleted':
      return `deleted, ${bytes(data['bytes_freed'])} freed`;
    default:
      return type;
  }
}

/** The job page (`#/jobs/<id>`): its record, its events as they arrive, its result. Returns its cleanup. */
export function showJobView(id: string, onDeleted: (message: string) => void): () => void {
  const view = byId('job-view', HTMLDivElement);
  const heading = h('h2', { tabindex: -1 }, 'Job ', h('code', {}, id));
  const message = h('div', { class: 'message', role: 'status' });
  const summary = h('section', { class: 'card summary', 'aria-label': 'Status' });
  const details = h('section', { class: 'card details', 'aria-label': 'Result' });
  const events = h('ol', { class: 'events' });
  const record = h('pre', { class: 'record', tabindex: 0 });
  view.replaceChildren(
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/' }, '← All jobs')),
    heading,
    message,
    summary,
    details,
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'events-heading' },
      h('h3', { id: 'events-heading' }, 'Events'),
      h('p', { class: 'hint' }, 'As they arrive from the job’s event stream; it ends when the job does.'),
      events,
    ),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'record-heading' },
      h('h3', { id: 'record-heading' }, 'Record'),
      record,
    ),
  );

  let state: JobState | null = null;
  let shown = '';
  let recordAt = '';
  const render = (job: LiveJob) => {
    document.title = `${jobTitle(job)} · media-jobs`;
    if (!state) {
      state = new JobState(jobTitle(job));
      const remove = h('button', { type: 'button', class: 'danger' }, 'Delete');
      remove.addEventListener('click', () => {
        deleteJob(id).then(
          (done) => done !== null && onDeleted(done),
          (err: unknown) => showError(message, err),
        );
      });
      const actions = h('div', { class: 'job-actions' }, remove);
      summary.replaceChildren(
        h('p', { class: 'job-title' }),
        h(
          'p',
          { class: 'job-meta' },
          h('span', { class: 'kind' }, job.kind),
          ` created ${dateTime(job.created_at)}`,
        ),
        state.el,
        h('p', { class: 'job-error', role: 'alert', hidden: true }),
        actions,
      );
    }
    state.update(job);
    const title = summary.querySelector('.job-title');
    if (title) title.textContent = jobTitle(job);
    const error = summary.querySelector<HTMLParagraphElement>('.job-error');
    if (error) {
      error.hidden = job.status !== 'failed';
      error.textContent = job.error ? `${capital(job.error.message)} (${job.error.code})` : '';
    }
    // Facts, player and download change with the status and result, not with each progress tick.
    const key = `${job.status}|${job.updated_at}`;
    if (key !== shown) {
      shown = key;
      const actions = summary.querySelector('.job-actions');
      actions?.querySelector('a.button')?.remove();
      if (job.status === 'completed') actions?.prepend(downloadLink(job, 'Download the file'));
      const play = player(job);
      details.replaceChildren(
        ...(job.kind === 'download' ? downloadFacts(job) : normalizeFacts(job)),
        ...(play ? [group('Preview', play)] : []),
      );
    }
    if (job.updated_at !== recordAt) {
      recordAt = job.updated_at;
      const { stage: _s, note: _n, ...plain } = job;
      record.textContent = JSON.stringify(plain, null, 2);
    }
  };

  const logEvent = (event: LiveEvent) => {
    const at = typeof event.data['at'] === 'string' ? event.data['at'] : new Date().toISOString();
    // Like a terminal: the log follows new events unless the reader scrolled up.
    const following = events.scrollHeight - events.scrollTop - events.clientHeight < 32;
    events.append(
      h(
        'li',
        { 'data-type': event.type },
        h('time', { datetime: at }, clock(at)),
        ' ',
        h('span', { class: 'event-type' }, event.type),
        ' ',
        h('span', {}, eventSummary(event)),
      ),
    );
    while (events.childElementCount > MAX_EVENTS) events.firstElementChild?.remove();
    if (following) events.scrollTop = events.scrollHeight;
  };

  let closed = false;
  const stop = onJobChange((changed, job) => {
    if (changed !== id) return;
    if (job) render(job);
    else {
      summary.replaceChildren(h('p', {}, 'This job is gone: deleted, or expired and removed.'));
      details.replaceChildren();
    }
  });
  const stream = { close: () => undefined as void };
  call<Job>('GET', jobPath(id)).then(
    ({ body }) => {
      if (closed) return;
      putJob(body);
      const job = getJob(id);
      if (job) render(job);
      Object.assign(stream, follow(id, logEvent));
    },
    (err: unknown) => {
      if (closed) return;
      if (err instanceof ApiError && (err.status === 404 || err.status === 410)) {
        summary.replaceChildren(
          h('p', {}, `No job ${id}: ${err.message}. It may have expired or been deleted.`),
          h('p', {}, h('a', { href: '#/' }, 'Back to all jobs')),
        );
        details.remove();
      } else showError(message, err);
    },
  );
  return () => {
    closed = true;
    stop();
    stream.close();
  };
}
