// The console: a hash router over a few pages, behind the API key the user types in.
// Each page's mount(view, params, query) returns a cleanup that stops its timers and streams.

import { api, auth, ApiError } from './api.js';
import { h, replace } from './dom.js';
import { errorWords } from './words.js';
import * as fleet from './fleet.js';
import * as printer from './printer.js';
import * as jobs from './jobs.js';
import * as job from './job.js';
import * as feed from './feed.js';

const view = document.getElementById('view');
const signout = document.getElementById('signout');
let cleanup = null;

const routes = [
  [/^\/$/, fleet, 'fleet'],
  [/^\/printer\/([^/]+)\/([^/]+)$/, printer, 'fleet'],
  [/^\/jobs$/, jobs, 'jobs'],
  [/^\/job\/([^/]+)$/, job, 'jobs'],
  [/^\/feed$/, feed, 'feed'],
];

function parseHash() {
  const raw = window.location.hash.replace(/^#/, '') || '/';
  const [path, search = ''] = raw.split('?');
  return { path, query: new URLSearchParams(search) };
}

function stop() {
  if (cleanup) cleanup();
  cleanup = null;
}

function route() {
  stop();
  if (!auth.key) return showLogin();
  signout.hidden = false;
  const { path, query } = parseHash();
  for (const [pattern, page, nav] of routes) {
    const match = pattern.exec(path);
    if (!match) continue;
    for (const link of document.querySelectorAll('[data-nav]')) {
      link.classList.toggle('active', link.dataset.nav === nav);
    }
    const params = match.slice(1).map(decodeURIComponent);
    cleanup = page.mount(view, params, query) || null;
    return;
  }
  replace(view, h('p', { class: 'box error', text: 'No such page.' }), h('a', { href: '#/', text: 'Back to the fleet' }));
}

function showLogin(message) {
  signout.hidden = true;
  const input = h('input', {
    type: 'password', id: 'api-key', name: 'api-key', autocomplete: 'off', required: true,
    placeholder: 'pmk_…', 'aria-label': 'API key',
  });
  const status = h('p', { class: message ? 'box error' : 'muted', role: 'status', text: message || '' });
  const form = h('form', { class: 'card login', onsubmit: async (event) => {
    event.preventDefault();
    auth.set(input.value.trim());
    try {
      await api('/v1/console/branches', { query: { limit: 1 }, handle401: true });
      route();
    } catch (err) {
      auth.clear();
      replace(status, err instanceof ApiError ? errorWords(err.code, err.message) : String(err));
      status.className = 'box error';
    }
  } },
  h('h1', { text: 'Sign in' }),
  h('p', { text: 'Paste an API key of your chain (or the operator token). It stays in this browser tab only.' }),
  h('label', { for: 'api-key', text: 'API key' }), input,
  h('button', { type: 'submit', class: 'primary', text: 'Open the console' }),
  status);
  replace(view, form);
  input.focus();
}

signout.addEventListener('click', () => {
  stop();
  auth.clear();
  showLogin();
});

window.addEventListener('pm:unauthorized', () => {
  stop();
  auth.clear();
  showLogin('This API key is not valid any more. Sign in again.');
});
window.addEventListener('hashchange', route);
route();
