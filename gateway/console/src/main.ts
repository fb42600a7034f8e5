/**
 * The web console served at `/`: submit downloads and normalizations, watch jobs live,
 * download results, delete jobs. Plain DOM and the gateway's own API; no framework.
 */
import { byId } from './dom.js';
import { initDownloadForm, initNormalizeForm } from './forms.js';
import { showJobView } from './job-view.js';
import { initKeyPanel } from './key.js';
import { JobList } from './list.js';

const JOB_ROUTE = /^#\/jobs\/([A-Za-z0-9_-]{1,200})$/;

function start(): void {
  initKeyPanel();
  const list = new JobList();
  initDownloadForm((job) => list.add(job));
  initNormalizeForm((job) => list.add(job));
  const home = byId('home-view', HTMLDivElement);
  const jobView = byId('job-view', HTMLDivElement);
  let leave: (() => void) | null = null;
  let first = true;

  const route = () => {
    leave?.();
    leave = null;
    const match = JOB_ROUTE.exec(location.hash);
    if (match?.[1]) {
      home.hidden = true;
      jobView.hidden = false;
      list.pause();
      leave = showJobView(match[1], (message) => {
        list.say(message);
        location.hash = '#/';
      });
      if (!first) jobView.querySelector<HTMLElement>('h2')?.focus();
      window.scrollTo(0, 0);
    } else {
      jobView.hidden = true;
      jobView.replaceChildren();
      home.hidden = false;
      document.title = 'media-jobs console';
      list.resume();
      if (!first) byId('main', HTMLElement).focus();
    }
    first = false;
  };
  window.addEventListener('hashchange', route);
  route();
}

start();
