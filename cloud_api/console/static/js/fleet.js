// Fleet overview: totals, then one page of branches (server-side search and paging) with their
// agents (online/offline since when) and printers (ready/warning/down and why).

import { api, ApiError } from './api.js';
import { h, replace } from './dom.js';
import { every } from './poll.js';
import {
  agentStateWords, bytes, clock, conditionWords, errorWords, printerReason, since, tone,
} from './words.js';

const PAGE = 24;

export function mount(view, _params, query) {
  const state = {
    q: query.get('q') || '',
    problems: query.get('problems') === '1',
    after: query.get('after') || null,
    trail: [],
  };
  let controller = null;

  const totals = h('section', { class: 'tiles', 'aria-label': 'Totals' });
  const updated = h('span', { class: 'muted small' });
  const results = h('section', { class: 'results', 'aria-live': 'polite' });
  const search = h('input', {
    type: 'search', id: 'fleet-search', value: state.q, placeholder: 'Search a branch, agent or printer',
    'aria-label': 'Search branches, agents and printers',
  });
  const problems = h('input', { type: 'checkbox', id: 'fleet-problems', checked: state.problems });

  let debounce = null;
  search.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => { state.q = search.value; restart(); }, 250);
  });
  problems.addEventListener('change', () => { state.problems = problems.checked; restart(); });

  replace(view,
    h('div', { class: 'page-head' }, h('h1', { text: 'Fleet' }), updated),
    totals,
    h('div', { class: 'controls' }, search,
      h('label', { class: 'check', for: 'fleet-problems' }, problems, ' Problems only')),
    results);

  function syncUrl() {
    const q = new URLSearchParams();
    if (state.q) q.set('q', state.q);
    if (state.problems) q.set('problems', '1');
    if (state.after) q.set('after', state.after);
    const s = q.toString();
    history.replaceState(null, '', `#/${s ? `?${s}` : ''}`);
  }

  function restart() {
    state.after = null;
    state.trail = [];
    refresh();
  }

  async function refresh() {
    syncUrl();
    controller?.abort();
    controller = new AbortController();
    try {
      const page = await api('/v1/console/branches', {
        query: { q: state.q, problems_only: state.problems, after: state.after, limit: PAGE },
        signal: controller.signal,
      });
      renderTotals(page.totals);
      renderResults(page);
      replace(updated, `Updated ${clock(page.at)}`);
    } catch (err) {
      if (err.name === 'AbortError') return;
      replace(results, h('p', { class: 'box error', text: err instanceof ApiError ? errorWords(err.code, err.message) : String(err) }));
    }
  }

  function renderTotals(t) {
    const p = t.printers;
    replace(totals,
      tile('Branches', t.branches, t.branches_with_problems ? `${t.branches_with_problems} need a look` : 'all fine', t.branches_with_problems ? 'warn' : 'ok'),
      tile('Agents online', t.agents_online, `${t.agents_offline} offline`, t.agents_offline ? 'bad' : 'ok'),
      tile('Printers ready', p.ready, `of ${p.total}`, p.ready === p.total ? 'ok' : 'info'),
      tile('Warnings', p.warning, warningDetail(p), p.warning ? 'warn' : 'ok'),
      tile('Down', p.down, downDetail(p), p.down ? 'bad' : 'ok'));
  }

  function renderResults(page) {
    const start = state.trail.length * PAGE;
    const summary = page.matched
      ? `Branches ${start + 1}–${start + page.branches.length} of ${page.matched}`
      : (state.q || state.problems ? 'No branch matches.' : 'No agent has connected yet.');
    const prev = h('button', { type: 'button', class: 'ghost', disabled: !state.trail.length, text: '← Previous',
      onclick: () => { state.after = state.trail.pop() ?? null; refresh(); } });
    const next = h('button', { type: 'button', class: 'ghost', disabled: !page.next_after, text: 'Next →',
      onclick: () => { state.trail.push(state.after); state.after = page.next_after; refresh(); } });
    replace(results,
      h('p', { class: 'muted small', text: summary }),
      h('div', { class: 'grid' }, page.branches.map(branchCard)),
      (page.next_after || state.trail.length) ? h('div', { class: 'pager' }, prev, next) : null);
  }

  const stopPolling = every(5000, refresh);
  return () => { stopPolling(); controller?.abort(); clearTimeout(debounce); };
}

function warningDetail(p) {
  const parts = [];
  if (p.paper_near_end) parts.push(`${p.paper_near_end} low on paper`);
  if (p.last_error) parts.push(`${p.last_error} last job failed`);
  return parts.join(', ') || 'none';
}

function downDetail(p) {
  const parts = [];
  if (p.agent_offline) parts.push(`${p.agent_offline} agent offline`);
  if (p.paper_out) parts.push(`${p.paper_out} out of paper`);
  if (p.cover_open) parts.push(`${p.cover_open} cover open`);
  if (p.printer_offline) parts.push(`${p.printer_offline} not answering`);
  return parts.join(', ') || 'none';
}

function tile(label, value, detail, kind) {
  return h('div', { class: `tile ${kind}` },
    h('span', { class: 'tile-label', text: label }),
    h('strong', { class: 'tile-value', text: String(value) }),
    h('span', { class: 'tile-detail', text: detail }));
}

export function pill(state, text) {
  return h('span', { class: `pill ${tone(state)}`, text });
}

export function agentRow(agent) {
  const facts = [agent.version && `v${agent.version}`, agent.os,
    agent.online && agent.cpu_percent !== null ? `CPU ${agent.cpu_percent.toFixed(0)} %` : null,
    agent.online && agent.rss_bytes ? `RAM ${bytes(agent.rss_bytes)}` : null,
    agent.online && agent.queue_depth ? `${agent.queue_depth} queued` : null].filter(Boolean);
  return h('li', { class: 'agent', dataset: { agent: agent.agent_id, state: agent.state } },
    h('span', { class: `dot ${tone(agent.state)}`, 'aria-hidden': 'true' }),
    h('div', {},
      h('div', {}, h('strong', { text: agent.agent_id }), ' ',
        h('span', { class: 'agent-state', text: agentStateWords(agent.state) }), ' ',
        h('span', { class: 'muted', text: since(agent.since) })),
      facts.length ? h('div', { class: 'muted small', text: facts.join(' · ') }) : null));
}

function branchCard(branch) {
  const link = (p) => `#/printer/${encodeURIComponent(branch.branch_id)}/${encodeURIComponent(p.printer_id)}`;
  return h('article', { class: `card branch ${branch.healthy ? '' : 'attention'}`, dataset: { branch: branch.branch_id } },
    h('header', {},
      h('h2', { text: branch.branch_id }),
      pill(branch.healthy ? 'ready' : 'warning', branch.healthy ? 'All fine' : 'Needs a look')),
    h('ul', { class: 'agents' }, branch.agents.map(agentRow)),
    branch.printers.length
      ? h('ul', { class: 'printers' }, branch.printers.map((p) => h('li', {},
        h('a', { href: link(p), class: 'printer-link', dataset: { printer: p.printer_id } },
          h('span', { class: 'printer-name', text: p.printer_id }),
          pill(p.condition, conditionWords(p.condition)),
          h('span', { class: 'reason', text: printerReason(p) })))))
      : h('p', { class: 'muted small', text: 'No printer reported.' }));
}
