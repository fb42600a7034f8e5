import { call, type Job, type JobPage } from './api.js';
import { byId, h, hidden } from './dom.js';
import { capital } from './format.js';
import { showError } from './forms.js';
import { deleteJob, downloadLink, jobAsk, jobTitle, JobState } from './job-parts.js';
import { follow, type Follow } from './live.js';
import { getJob, onJobChange, putJob, TERMINAL, type LiveJob } from './store.js';

const PAGE_SIZE = 10;
/**
 * Browsers open at most 6 HTTP/1.1 connections to one origin, and each event stream holds
 * one: a few live streams leave room for the page's own requests. Jobs beyond them move on
 * with the list's refresh.
 */
const MAX_STREAMS = 3;
const REFRESH_MS = 10_000;

/** One job in the list, updated in place so focus and scrolling stay where they are. */
class Row {
  readonly el: HTMLLIElement;
  private readonly state: JobState;
  private readonly error = h('p', { class: 'job-error' });
  private readonly download: HTMLAnchorElement;
  readonly title: HTMLAnchorElement;

  constructor(job: LiveJob, onDelete: (id: string) => void) {
    const title = jobTitle(job);
    this.title = h('a', { class: 'job-title', href: `#/jobs/${job.id}` }, title);
    this.state = new JobState(title);
    this.download = downloadLink(job);
    const remove = h('button', { type: 'button', class: 'danger' }, 'Delete', hidden(` ${job.id}`));
    remove.addEventListener('click', () => onDelete(job.id));
    this.el = h(
      'li',
      { class: 'job', 'data-id': job.id },
      h(
        'div',
        { class: 'job-head' },
        this.title,
        h(
          'span',
          { class: 'job-meta' },
          h('span', { class: 'kind' }, job.kind),
          ' ',
          jobAsk(job),
          h('code', {}, job.id),
        ),
      ),
      this.state.el,
      this.error,
      h('div', { class: 'job-actions' }, this.download, remove),
    );
    this.update(job);
  }

  update(job: LiveJob): void {
    this.el.dataset['status'] = job.status;
    this.title.textContent = jobTitle(job);
    this.state.update(job);
    this.download.hidden = job.status !== 'completed';
    this.error.hidden = job.status !== 'failed';
    this.error.textContent = job.error ? `${capital(job.error.message)} (${job.error.code})` : '';
  }

  tick(): void {
    this.state.tick();
  }
}

/** The recent jobs of `GET /jobs`, page by page, moving live. */
export class JobList {
  private order: string[] = [];
  private cursor: string | null = null;
  private pages = 1;
  private readonly rows = new Map<string, Row>();
  private readonly streams = new Map<string, Follow>();
  /** Jobs whose stream the gateway refused (gone, rate limited): left to the refresh until the next one. */
  private readonly refused = new Set<string>();
  private active = true;
  private readonly list = byId('job-list', HTMLUListElement);
  private readonly message = byId('list-message', HTMLDivElement);
  private readonly more = byId('more', HTMLButtonElement);
  private readonly kind = byId('filter-kind', HTMLSelectElement);

  constructor() {
    onJobChange((id, job) => {
      const row = this.rows.get(id);
      if (!row) return;
      if (job) row.update(job);
      else this.drop(id);
      if (!job || TERMINAL.has(job.status)) this.syncStreams();
    });
    byId('refresh', HTMLButtonElement).addEventListener('click', () => void this.refresh());
    this.kind.addEventListener('change', () => {
      this.pages = 1;
      void this.refresh();
    });
    this.more.addEventListener('click', () => void this.loadMore());
    setInterval(() => {
      if (this.active && document.visibilityState === 'visible') void this.refresh();
    }, REFRESH_MS);
    setInterval(() => this.rows.forEach((row) => row.tick()), 1000);
  }

  /** The home view is shown again: read the list and follow its live jobs. */
  resume(): void {
    this.active = true;
    void this.refresh();
  }

  /** Another view is shown: its streams get the connections. */
  pause(): void {
    this.active = false;
    this.syncStreams();
  }

  /** A job just submitted from this page: at the top, followed live. */
  add(job: Job): void {
    putJob(job);
    if (!this.order.includes(job.id)) this.order.unshift(job.id);
    this.render();
  }

  say(text: string): void {
    this.message.replaceChildren(h('p', {}, text));
  }

  private query(cursor: string | null): string {
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (this.kind.value) params.set('kind', this.kind.value);
    if (cursor) params.set('cursor', cursor);
    return `/jobs?${params.toString()}`;
  }

  /** Reads the first `pages` pages again. */
  async refresh(): Promise<void> {
    try {
      const ids: string[] = [];
      let cursor: string | null = null;
      for (let page = 0; page < this.pages; page += 1) {
        const { body }: { body: JobPage } = await call<JobPage>('GET', this.query(cursor));
        for (const job of body.jobs) {
          putJob(job);
          ids.push(job.id);
        }
        cursor = body.next_cursor;
        if (!cursor) break;
      }
      this.order = ids;
      this.cursor = cursor;
      this.refused.clear();
      if (this.message.querySelector('.error')) this.message.replaceChildren();
      this.render();
    } catch (err) {
      showError(this.message, err);
    }
  }

  private async loadMore(): Promise<void> {
    if (!this.cursor) return;
    try {
      const { body } = await call<JobPage>('GET', this.query(this.cursor));
      this.pages += 1;
      for (const job of body.jobs) {
        putJob(job);
        if (!this.order.includes(job.id)) this.order.push(job.id);
      }
      this.cursor = body.next_cursor;
      this.render();
      // Keyboard users land on the first job of the new page.
      this.rows.get(body.jobs[0]?.id ?? '')?.title.focus();
    } catch (err) {
      showError(this.message, err);
    }
  }

  private async remove(id: string): Promise<void> {
    const next = this.order[this.order.indexOf(id) + 1];
    try {
      const done = await deleteJob(id);
      if (done === null) return;
      this.say(done);
      // The focused button is gone: focus goes on to the next job, or to the list's heading.
      const target =
        (next ? this.rows.get(next)?.title : undefined) ?? byId('jobs-heading', HTMLHeadingElement);
      target.focus();
    } catch (err) {
      showError(this.message, err);
    }
  }

  private drop(id: string): void {
    this.order = this.order.filter((o) => o !== id);
    this.rows.get(id)?.el.remove();
    this.rows.delete(id);
    this.streams.get(id)?.close();
    this.streams.delete(id);
    this.render();
  }

  /** Puts the rows in `order`, moving a node only when it is out of place. */
  private render(): void {
    let index = 0;
    for (const id of this.order) {
      const job = getJob(id);
      if (!job) continue;
      let row = this.rows.get(id);
      if (!row) {
        row = new Row(job, (target) => void this.remove(target));
        this.rows.set(id, row);
      }
      const at = this.list.children.item(index);
      if (at !== row.el) this.list.insertBefore(row.el, at);
      index += 1;
    }
    for (const [id, row] of this.rows) {
      if (!this.order.includes(id) || !getJob(id)) {
        row.el.remove();
        this.rows.delete(id);
      }
    }
    this.more.hidden = this.cursor === null;
    if (this.rows.size === 0 && !this.message.querySelector('.error'))
      this.say(this.kind.value ? 'No jobs of this kind yet.' : 'No jobs yet: submit one above.');
    else if (this.message.textContent?.startsWith('No jobs')) this.message.replaceChildren();
    this.syncStreams();
  }

  /** Follows the first few unfinished jobs of the list; closes streams no longer wanted. */
  private syncStreams(): void {
    const wanted = this.active
      ? this.order.filter((id) => {
          const job = getJob(id);
          return job && !TERMINAL.has(job.status) && !this.refused.has(id);
        })
      : [];
    const keep = new Set(wanted.slice(0, MAX_STREAMS));
    for (const [id, stream] of this.streams) {
      if (keep.has(id)) continue;
      stream.close();
      this.streams.delete(id);
    }
    for (const id of keep) {
      if (this.streams.has(id)) continue;
      this.streams.set(
        id,
        follow(id, undefined, (reason) => {
          this.streams.delete(id);
          if (reason === 'refused') this.refused.add(id);
          this.syncStreams();
        }),
      );
    }
  }
}
