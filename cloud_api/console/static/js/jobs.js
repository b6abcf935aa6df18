// Job search: by branch, printer, state and kind, newest first, paged on the server.

import { api, ApiError } from './api.js';
import { h, replace } from './dom.js';
import { pill } from './fleet.js';
import { clock, errorWords, jobStateWords } from './words.js';

const STATES = ['queued', 'sent', 'accepted', 'printing', 'printed', 'failed', 'expired', 'cancelled', 'outcome_unknown'];
const PAGE = 25;

export function mount(view, _params, query) {
  const enc = encodeURIComponent;
  const field = (name, label, placeholder) => h('label', {}, label,
    h('input', { name, value: query.get(name) || '', placeholder, autocomplete: 'off' }));
  const select = (name, label, options) => h('label', {}, label,
    h('select', { name }, h('option', { value: '', text: 'any' }),
      options.map(([value, text]) => h('option', { value, text, selected: query.get(name) === value }))));
  const jobId = h('input', { name: 'job_id', placeholder: 'job id', autocomplete: 'off', 'aria-label': 'Open a job by id' });
  const form = h('form', { class: 'card filters' },
    field('branch_id', 'Branch', 'any branch'),
    field('printer_id', 'Printer', 'any printer'),
    select('state', 'State', STATES.map((s) => [s, jobStateWords(s)])),
    select('kind', 'Kind', [['print', 'ticket'], ['test', 'test page']]),
    h('button', { type: 'submit', class: 'primary', text: 'Search' }));
  const open = h('form', { class: 'open-job', onsubmit: (e) => {
    e.preventDefault();
    if (jobId.value.trim()) window.location.hash = `#/job/${enc(jobId.value.trim())}`;
  } }, jobId, h('button', { type: 'submit', class: 'ghost', text: 'Open' }));
  const results = h('section', { class: 'results' });
  const trail = [];
  let cursor = null;
  let controller = null;

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    window.location.hash = `#/jobs${q.toString() ? `?${q}` : ''}`;
  });

  replace(view, h('div', { class: 'page-head' }, h('h1', { text: 'Jobs' }), open), form, results);

  async function load() {
    controller?.abort();
    controller = new AbortController();
    const params = Object.fromEntries(['branch_id', 'printer_id', 'state', 'kind'].map((k) => [k, query.get(k)]));
    try {
      const page = await api('/v1/jobs/search', { query: { ...params, cursor, limit: PAGE }, signal: controller.signal });
      const prev = h('button', { type: 'button', class: 'ghost', disabled: !trail.length, text: '← Newer',
        onclick: () => { cursor = trail.pop() ?? null; load(); } });
      const next = h('button', { type: 'button', class: 'ghost', disabled: !page.next_cursor, text: 'Older →',
        onclick: () => { trail.push(cursor); cursor = page.next_cursor; load(); } });
      replace(results,
        page.jobs.length ? h('table', { class: 'jobs' },
          h('thead', {}, h('tr', {}, ['When', 'State', 'Job', 'Branch', 'Printer', 'Kind', 'Why'].map((t) => h('th', { text: t })))),
          h('tbody', {}, page.jobs.map((j) => h('tr', { dataset: { job: j.id } },
            h('td', { 'data-label': 'When', text: clock(j.created_at, true) }),
            h('td', { 'data-label': 'State' }, pill(j.state, jobStateWords(j.state))),
            h('td', { 'data-label': 'Job' }, h('a', { href: `#/job/${enc(j.id)}`, class: 'mono', text: j.id.slice(0, 12) })),
            h('td', { 'data-label': 'Branch', text: j.branch_id }),
            h('td', { 'data-label': 'Printer' }, h('a', { href: `#/printer/${enc(j.branch_id)}/${enc(j.printer_id)}`, text: j.printer_id })),
            h('td', { 'data-label': 'Kind', text: j.kind === 'test' ? 'test page' : 'ticket' }),
            h('td', { 'data-label': 'Why', class: 'reason', text: j.error ? errorWords(j.error.code, j.error.message) : '' })))))
          : h('p', { class: 'muted', text: 'No job matches.' }),
        (page.next_cursor || trail.length) ? h('div', { class: 'pager' }, prev, next) : null);
    } catch (err) {
      if (err.name === 'AbortError') return;
      replace(results, h('p', { class: 'box error', text: err instanceof ApiError ? errorWords(err.code, err.message) : String(err) }));
    }
  }

  load();
  return () => controller?.abort();
}
