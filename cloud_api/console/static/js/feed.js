// Live event feed: job transitions, agents going online/offline, printers changing condition,
// for every branch the key may see (or one branch), newest first; reconnects by itself.

import { ApiError, sse } from './api.js';
import { h, replace } from './dom.js';
import { pill } from './fleet.js';
import {
  agentStateWords, clock, conditionWords, errorWords, jobStateWords, problemWords,
} from './words.js';

const KEEP = 300;

export function mount(view, _params, query) {
  const enc = encodeURIComponent;
  const branch = query.get('branch_id') || '';
  const list = h('ol', { class: 'feed', id: 'feed' });
  const status = h('span', { class: 'conn', id: 'feed-status', role: 'status', text: 'Connecting…' });
  const pause = h('button', { type: 'button', class: 'ghost', text: 'Pause' });
  const filter = h('input', { type: 'search', value: branch, placeholder: 'all branches', 'aria-label': 'Only one branch' });
  let paused = false;
  let held = [];
  let stopped = false;
  let controller = null;

  pause.addEventListener('click', () => {
    paused = !paused;
    replace(pause, paused ? 'Resume' : 'Pause');
    if (!paused) { held.forEach(show); held = []; }
  });
  filter.addEventListener('change', () => {
    window.location.hash = `#/feed${filter.value.trim() ? `?branch_id=${enc(filter.value.trim())}` : ''}`;
  });

  replace(view,
    h('div', { class: 'page-head' }, h('h1', { text: 'Live feed' }), status),
    h('div', { class: 'controls' }, filter, pause),
    h('p', { class: 'muted small', text: 'Events from now on: jobs, branch computers and printers. Nothing is loaded from before you opened this page.' }),
    list);

  function show(event) {
    list.prepend(row(event));
    while (list.childElementCount > KEEP) list.lastElementChild.remove();
  }

  async function connect() {
    let delay = 500;
    while (!stopped) {
      controller = new AbortController();
      try {
        await sse('/v1/events', {
          query: { branch_id: branch },
          signal: controller.signal,
          onEvent: (type, data) => {
            if (type === 'ready') {
              status.className = 'conn live';
              replace(status, 'Live');
              delay = 500;
              return;
            }
            const event = { ...data, kind: data.kind || type };
            if (paused) held.push(event); else show(event);
          },
        });
      } catch (err) {
        if (err.name === 'AbortError' || stopped) return;
        if (err instanceof ApiError && err.status !== 0 && err.status < 500) {
          replace(status, errorWords(err.code, err.message));
          status.className = 'conn down';
          return;
        }
      }
      if (stopped) return;
      status.className = 'conn down';
      replace(status, 'Reconnecting…');
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10000);
    }
  }

  connect();
  return () => { stopped = true; controller?.abort(); };
}

function where(e) {
  const parts = [h('a', { href: `#/?q=${encodeURIComponent(e.branch_id)}`, text: e.branch_id })];
  if (e.printer_id) {
    parts.push(' / ', h('a', { href: `#/printer/${encodeURIComponent(e.branch_id)}/${encodeURIComponent(e.printer_id)}`, text: e.printer_id }));
  }
  return parts;
}

function row(e) {
  let badge;
  let text;
  if (e.kind === 'job') {
    badge = pill(e.state, jobStateWords(e.state));
    text = [e.job_kind === 'test' ? 'Test page ' : 'Ticket ',
      h('a', { href: `#/job/${encodeURIComponent(e.job_id)}`, class: 'mono', text: e.job_id.slice(0, 12) }),
      ' on ', where(e), e.error ? h('div', { class: 'reason', text: errorWords(e.error.code, e.error.message) }) : null];
  } else if (e.kind === 'agent') {
    badge = pill(e.state, agentStateWords(e.state));
    text = ['Branch computer ', h('strong', { text: e.agent_id }), ' in ', where(e),
      e.previous ? h('span', { class: 'muted small', text: ` (was ${agentStateWords(e.previous).toLowerCase()})` }) : null];
  } else if (e.kind === 'printer') {
    badge = pill(e.state, conditionWords(e.state));
    text = ['Printer ', where(e),
      e.problems && e.problems.length ? h('div', { class: 'reason', text: e.problems.map(problemWords).join(' · ') }) : null];
  } else {
    badge = pill('warning', 'Missed');
    text = ['Some events were skipped: this page read too slowly.'];
  }
  return h('li', { class: `feed-row ${e.kind}`, dataset: { kind: e.kind, state: e.state || '' } },
    h('time', { class: 'muted small', text: clock(e.at) }), badge, h('div', { class: 'what' }, text));
}
