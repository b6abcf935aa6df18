// One job: what, where, the outcome in words, and its timeline (live until it ends).

import { api, ApiError, sse } from './api.js';
import { h, replace } from './dom.js';
import { pill } from './fleet.js';
import { bytes, clock, errorWords, FINAL, jobStateWords } from './words.js';

export function mount(view, [jobId]) {
  const enc = encodeURIComponent;
  const controller = new AbortController();

  async function load() {
    let job;
    try {
      job = await api(`/v1/jobs/${enc(jobId)}`, { signal: controller.signal });
    } catch (err) {
      if (err.name === 'AbortError') return;
      replace(view, h('p', { class: 'box error', text: err instanceof ApiError ? errorWords(err.code, err.message) : String(err) }));
      return;
    }
    render(job);
    if (!FINAL.has(job.state)) follow(job);
  }

  function render(job) {
    const start = job.created_at;
    const timeline = job.timeline.map((e, i) => {
      const prev = i ? job.timeline[i - 1].at : start;
      return h('li', { class: `event ${e.state}`, dataset: { state: e.state } },
        pill(e.state, jobStateWords(e.state)),
        h('span', { class: 'when' }, clock(e.at), ' ', h('span', { class: 'muted small', text: `+${((e.at - start) * 1000).toFixed(1)} ms` })),
        i ? h('span', { class: 'delta muted small', text: `(${((e.at - prev) * 1000).toFixed(1)} ms after the previous)` }) : null,
        e.cause ? h('div', { class: 'cause small', text: e.cause }) : null);
    });
    replace(view,
      h('nav', { class: 'crumbs' }, h('a', { href: '#/jobs', text: 'Jobs' }), ' / ', h('span', { class: 'mono', text: job.id })),
      h('div', { class: 'page-head' }, h('h1', { text: job.kind === 'test' ? 'Test page' : 'Ticket' }),
        pill(job.state, jobStateWords(job.state))),
      job.error ? h('div', { class: 'box error', dataset: { code: job.error.code } },
        h('strong', { text: errorWords(job.error.code, job.error.message) }),
        h('div', { class: 'muted small', text: `Code ${job.error.code} · ${job.error.message}` })) : null,
      job.state === 'printed' ? h('div', { class: 'box ok' }, h('strong', { text: 'Printed.' }),
        job.result ? ` ${bytes(job.result.bytes)} in ${job.result.duration_ms} ms at the printer${job.result.replayed ? ' (answered from the agent\'s ledger)' : ''}.` : '') : null,
      h('div', { class: 'two' },
        h('section', { class: 'card' }, h('h2', { text: 'Details' }),
          h('dl', { class: 'facts' },
            fact('Job id', h('span', { class: 'mono', text: job.id })),
            fact('Branch', h('a', { href: `#/?q=${enc(job.branch_id)}`, text: job.branch_id })),
            fact('Printer', h('a', { href: `#/printer/${enc(job.branch_id)}/${enc(job.printer_id)}`, text: job.printer_id })),
            fact('Agent', job.agent_id || '—'),
            fact('Copies', String(job.copies)),
            fact('Created', clock(job.created_at, true)),
            fact('Must start before', clock(job.deadline, true)))),
        h('section', { class: 'card' }, h('h2', { text: 'Timeline' }), h('ol', { class: 'timeline' }, timeline))));
  }

  async function follow(job) {
    try {
      await sse(`/v1/jobs/${enc(job.id)}/events`, {
        signal: controller.signal,
        onEvent: (type, event) => {
          if (type !== 'state') return;
          if (!job.timeline.some((e) => e.state === event.state && e.at === event.at)) {
            job = { ...job, state: event.state, timeline: [...job.timeline, event] };
            render(job);
          }
        },
      });
      const final = await api(`/v1/jobs/${enc(job.id)}`, { signal: controller.signal });
      render(final);
    } catch (err) {
      if (err.name !== 'AbortError') console.warn(err);
    }
  }

  replace(view, h('p', { class: 'muted', text: 'Loading…' }));
  load();
  return () => controller.abort();
}

function fact(label, value) {
  return [h('dt', { text: label }), h('dd', {}, value)];
}
