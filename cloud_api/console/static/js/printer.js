// One printer: its condition in words, its agent, a "Test print" button that shows each stage
// live (Server-Sent Events of the job) and the failure in words, and its recent jobs.

import { api, ApiError, sse } from './api.js';
import { h, replace } from './dom.js';
import { agentRow, pill } from './fleet.js';
import { every } from './poll.js';
import {
  ago, clock, conditionWords, errorWords, FINAL, jobStateWords, printerReason,
} from './words.js';

const STAGES = ['queued', 'sent', 'accepted', 'printing', 'printed'];

export function mount(view, [branchId, printerId]) {
  const enc = encodeURIComponent;
  const status = h('section', { class: 'card', 'aria-label': 'Printer status' }, h('p', { class: 'muted', text: 'Loading…' }));
  const stages = h('ol', { class: 'stages', 'aria-label': 'Stages of the test print' });
  const outcome = h('div', { class: 'outcome', role: 'status', 'aria-live': 'polite' });
  const recent = h('section', { class: 'card' });
  const button = h('button', { type: 'button', class: 'primary', id: 'test-print', text: 'Test print' });
  // The API refuses at once when the printer's last report says it cannot print; this asks
  // the printer itself (e.g. after loading paper, before its next report).
  const force = h('input', { type: 'checkbox', id: 'test-force' });
  const streams = new Set();
  let statusController = null;

  replace(view,
    h('nav', { class: 'crumbs' }, h('a', { href: '#/', text: 'Fleet' }), ' / ',
      h('a', { href: `#/?q=${enc(branchId)}`, text: branchId }), ' / ', printerId),
    h('div', { class: 'page-head' }, h('h1', { text: printerId }), h('span', { class: 'muted', text: `branch ${branchId}` })),
    h('div', { class: 'two' },
      status,
      h('section', { class: 'card test' },
        h('h2', { text: 'Test print' }),
        h('p', { class: 'muted small', text: 'Prints a test page and shows each stage as it happens.' }),
        h('div', { class: 'test-actions' }, button,
          h('label', { class: 'check small', for: 'test-force' }, force, ' Send even if the printer reports a problem')),
        stages, outcome)),
    recent);

  renderStages({});

  async function refreshStatus() {
    statusController?.abort();
    statusController = new AbortController();
    try {
      const branch = await api(`/v1/console/branches/${enc(branchId)}`, { signal: statusController.signal });
      const printer = branch.printers.find((p) => p.printer_id === printerId);
      if (!printer) {
        replace(status, h('p', { class: 'box error', text: errorWords('PRINTER_NOT_FOUND') }));
        return;
      }
      const agent = branch.agents.find((a) => a.agent_id === printer.agent_id);
      replace(status,
        h('h2', { text: 'Now' }),
        h('div', { class: 'condition' }, pill(printer.condition, conditionWords(printer.condition)),
          h('span', { class: 'reason', id: 'printer-reason', text: printerReason(printer) })),
        h('dl', { class: 'facts' },
          fact('Kind', printer.kind),
          fact('Paper', { ok: 'OK', near_end: 'Running low', out: 'Out', unknown: 'Not reported' }[printer.paper] || printer.paper),
          fact('Last printed', printer.last_printed_at ? `${clock(printer.last_printed_at, true)} (${ago(printer.last_printed_at)})` : 'never')),
        h('h3', { text: 'Branch computer' }),
        agent ? h('ul', { class: 'agents' }, agentRow(agent)) : null);
    } catch (err) {
      if (err.name === 'AbortError') return;
      replace(status, h('p', { class: 'box error', text: err instanceof ApiError ? errorWords(err.code, err.message) : String(err) }));
    }
  }

  async function refreshRecent() {
    try {
      const page = await api('/v1/jobs/search', { query: { branch_id: branchId, printer_id: printerId, limit: 8 } });
      replace(recent, h('h2', { text: 'Recent jobs' }),
        page.jobs.length ? h('ul', { class: 'joblist' }, page.jobs.map((j) => h('li', {},
          h('a', { href: `#/job/${enc(j.id)}` },
            pill(j.state, jobStateWords(j.state)),
            h('span', { class: 'mono', text: j.id.slice(0, 12) }),
            h('span', { class: 'muted small', text: `${j.kind === 'test' ? 'test page' : 'ticket'} · ${clock(j.created_at, true)}` }),
            j.error ? h('span', { class: 'reason', text: errorWords(j.error.code, j.error.message) }) : null))))
          : h('p', { class: 'muted', text: 'No job yet.' }),
        h('a', { href: `#/jobs?branch_id=${enc(branchId)}&printer_id=${enc(printerId)}`, text: 'All jobs of this printer →' }));
    } catch (err) {
      if (err.name !== 'AbortError') console.warn(err);
    }
  }

  function renderStages(reached, failedAt) {
    // A fast print's agent answers with its final alone: the stages before the last one
    // reached were passed without a report of their own (done, with no time).
    const last = STAGES.reduce((n, s, i) => (reached[s] !== undefined ? i : n), -1);
    replace(stages, STAGES.map((stage, i) => {
      const at = reached[stage];
      const failedHere = failedAt && stage === failedAt.stage;
      const cls = failedHere ? 'bad' : at !== undefined || i < last ? 'done' : 'todo';
      return h('li', { class: cls, dataset: { stage } },
        h('span', { class: 'stage-name', text: failedHere ? jobStateWords(failedAt.state) : jobStateWords(stage) }),
        h('span', { class: 'stage-time', text: at !== undefined ? `${at.toFixed(0)} ms` : '' }));
    }));
  }

  function showError(code, message, jobId) {
    replace(outcome, h('div', { class: 'box error', dataset: { code } },
      h('strong', { text: errorWords(code, message) }),
      h('div', { class: 'muted small' }, `Code ${code} · `,
        jobId ? h('a', { href: `#/job/${enc(jobId)}`, text: 'job timeline' }) : 'nothing was sent to the printer')));
  }

  async function testPrint() {
    button.disabled = true;
    replace(button, 'Printing…');
    replace(outcome);
    renderStages({});
    const controller = new AbortController();
    streams.add(controller);
    try {
      const job = await api(`/v1/branches/${enc(branchId)}/printers/${enc(printerId)}/test`, {
        method: 'POST', query: { wait: 'false', force: force.checked }, signal: controller.signal,
      });
      const reached = {};
      let last = null;
      await sse(`/v1/jobs/${enc(job.id)}/events`, {
        signal: controller.signal,
        onEvent: (type, event) => {
          if (type !== 'state') return;
          last = event;
          if (STAGES.includes(event.state)) reached[event.state] = (event.at - job.created_at) * 1000;
          const failed = FINAL.has(event.state) && event.state !== 'printed';
          const stage = STAGES.find((s) => reached[s] === undefined) || 'printed';
          renderStages(reached, failed ? { stage, state: event.state } : null);
        },
      });
      const final = await api(`/v1/jobs/${enc(job.id)}`, { signal: controller.signal });
      if (final.state === 'printed') {
        replace(outcome, h('div', { class: 'box ok' }, h('strong', { text: 'Printed.' }), ' ',
          h('span', { class: 'muted small' }, `${((last.at - job.created_at) * 1000).toFixed(0)} ms · `,
            h('a', { href: `#/job/${enc(job.id)}`, text: 'job timeline' }))));
      } else {
        const error = final.error || { code: final.state.toUpperCase(), message: '' };
        showError(error.code, error.message, job.id);
      }
    } catch (err) {
      if (err.name === 'AbortError') return;
      if (err instanceof ApiError) showError(err.code, err.message, err.jobId);
      else showError('INTERNAL', String(err));
    } finally {
      streams.delete(controller);
      button.disabled = false;
      replace(button, 'Test print');
      refreshStatus();
      refreshRecent();
    }
  }

  button.addEventListener('click', testPrint);
  const stopStatus = every(3000, refreshStatus);
  refreshRecent();
  return () => {
    stopStatus();
    statusController?.abort();
    for (const c of streams) c.abort();
  };
}

function fact(label, value) {
  return [h('dt', { text: label }), h('dd', { text: value })];
}
