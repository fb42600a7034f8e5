import { apiKey, type ApiError } from './api.js';
import { byId } from './dom.js';

const panel = () => byId('key-panel', HTMLElement);
const form = () => byId('key-form', HTMLFormElement);
const input = () => byId('api-key', HTMLInputElement);
const setView = () => byId('key-set', HTMLDivElement);
const message = () => byId('key-message', HTMLParagraphElement);

function show(): void {
  const hasKey = apiKey.get() !== null;
  panel().hidden = false;
  form().hidden = hasKey;
  setView().hidden = !hasKey;
}

/**
 * The API key panel: shown when the gateway has API_KEYS set (the page says so) or after a
 * 401. The key is typed once and kept in sessionStorage, so it is gone with the tab.
 */
export function initKeyPanel(): void {
  if (document.body.dataset['apiKeys'] === 'required' || apiKey.get() !== null) show();
  form().addEventListener('submit', (e) => {
    e.preventDefault();
    const key = input().value.trim();
    if (key === '') {
      message().textContent = 'Enter the API key.';
      input().focus();
      return;
    }
    if (/\s/.test(key)) {
      message().textContent = 'An API key has no spaces; check what was pasted.';
      input().focus();
      return;
    }
    apiKey.set(key);
    input().value = '';
    message().textContent = 'Key saved for this browser session.';
    show();
    byId('key-forget', HTMLButtonElement).focus();
  });
  byId('key-forget', HTMLButtonElement).addEventListener('click', () => {
    apiKey.clear();
    message().textContent = 'Key forgotten.';
    show();
    input().focus();
  });
}

/**
 * Called with a 401: asks for the key (again, if the one sent was refused) and says what to
 * do next. Returns the message for the place the user acted in.
 */
export function askForKey(err: ApiError): string {
  const refused = apiKey.get() !== null;
  if (refused) apiKey.clear();
  show();
  message().textContent = refused
    ? 'The gateway refused this API key. Enter a valid one.'
    : 'This gateway needs an API key to submit and delete jobs. Enter it here.';
  input().focus();
  return refused
    ? `The gateway refused the API key (${err.message}): enter a valid one at the top of the page, then try again.`
    : 'This gateway needs an API key: enter it at the top of the page, then try again.';
}
