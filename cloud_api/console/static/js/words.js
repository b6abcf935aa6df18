// What the API's codes mean, in words a support person can act on.

const ERRORS = {
  PAPER_OUT: 'The printer is out of paper. Load a new roll and try again.',
  COVER_OPEN: 'The printer cover is open. Close it until it clicks and try again.',
  PRINTER_OFFLINE:
    'The printer does not answer. Check that it is switched on and that its cable or network ' +
    'is connected, then try again.',
  PRINTER_ERROR:
    'The printer reported a fault. Switch it off and on again; if it happens again, call support.',
  AGENT_OFFLINE:
    'The branch computer that drives this printer is offline. Check that it is switched on and ' +
    'connected to the internet.',
  AGENT_UNREACHABLE:
    'The branch computer did not answer in time. Check its internet connection and try again.',
  PRINT_TIMEOUT:
    'The printer took the job but did not finish in time. Look at the printer (paper jam, ' +
    'message on its display) and whether the ticket came out before you try again.',
  EXPIRED: 'The job waited too long and was dropped, so that it does not print late.',
  OUTCOME_UNKNOWN:
    'We cannot tell whether it printed: the branch computer stopped while printing. Look at the ' +
    'printer before printing again.',
  CANCELLED: 'The job was cancelled before it printed.',
  PRINTER_NOT_FOUND: 'This branch has no printer of that name.',
  BROKER_UNAVAILABLE:
    'Our messaging service is unavailable right now. Try again in a minute; if it lasts, call support.',
  INTERNAL: 'Something went wrong on our side. Try again; if it happens again, call support.',
  UNKNOWN_METHOD: 'The branch computer runs an old version that cannot do this. Update it.',
  UNSUPPORTED_VERSION: 'The branch computer runs an old version that cannot do this. Update it.',
  UNAUTHORIZED: 'This API key is not valid, or it was revoked.',
  FORBIDDEN: 'This API key may not do that.',
  NOT_FOUND: 'Not found, or not visible with this API key.',
  INVALID_REQUEST: 'The request was not valid.',
  CONFLICT: 'This was already done with other details.',
  PAYLOAD_TOO_LARGE: 'The request is too large.',
  RATE_LIMITED: 'Too many requests in a short time. Wait a few seconds and try again.',
  CONFIG_INVALID:
    'The branch computer refused the new printer settings and keeps the old ones. Check the ' +
    'printer details (address, port, name) and save again.',
  UPDATE_REFUSED:
    'The branch computer refused a software update (its signature or checksum did not match). ' +
    'It keeps running the version it has; call support.',
  NETWORK: 'The API cannot be reached. Check your connection.',
};

export function errorWords(code, message) {
  return ERRORS[code] || message || `Failed (${code}).`;
}

const PROBLEMS = {
  agent_offline: 'Branch computer offline',
  printer_offline: 'Printer not answering',
  cover_open: 'Cover open',
  paper_out: 'Out of paper',
  paper_near_end: 'Paper running low',
  last_error: 'Last job failed',
};

export function problemWords(problem) {
  return PROBLEMS[problem] || problem.replaceAll('_', ' ');
}

// One sentence for a printer line of /v1/console/branches.
export function printerReason(printer) {
  if (!printer.problems.length) return 'Ready to print';
  const parts = printer.problems.map((p) => {
    if (p === 'last_error' && printer.last_error) {
      return `Last job failed: ${errorWords(printer.last_error.code, printer.last_error.message)}`;
    }
    return problemWords(p);
  });
  return parts.join(' · ');
}

const CONDITIONS = { ready: 'Ready', warning: 'Warning', down: 'Down' };
export const conditionWords = (c) => CONDITIONS[c] || c;

const AGENT_STATES = {
  online: 'Online',
  offline: 'Offline',
  expired: 'Offline (no heartbeat)',
  unknown: 'Unknown',
  removed: 'Removed',
};
export const agentStateWords = (s) => AGENT_STATES[s] || s;

const JOB_STATES = {
  queued: 'Waiting',
  sent: 'Sent to branch',
  accepted: 'Accepted by branch',
  printing: 'Printing',
  printed: 'Printed',
  failed: 'Failed',
  expired: 'Expired',
  cancelled: 'Cancelled',
  outcome_unknown: 'Outcome unknown',
};
export const jobStateWords = (s) => JOB_STATES[s] || s;
export const FINAL = new Set(['printed', 'failed', 'expired', 'cancelled', 'outcome_unknown']);
export const GOOD = new Set(['printed']);

export function tone(state) {
  if (['ready', 'online', 'printed'].includes(state)) return 'ok';
  if (['warning', 'queued', 'unknown', 'expired_job'].includes(state)) return 'warn';
  if (['down', 'offline', 'expired', 'failed', 'outcome_unknown', 'removed'].includes(state)) {
    return 'bad';
  }
  return 'info';
}

export function ago(seconds) {
  if (seconds === null || seconds === undefined) return 'never';
  const s = Math.max(0, Date.now() / 1000 - seconds);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function clock(seconds, withDate = false) {
  if (!seconds) return '—';
  const d = new Date(seconds * 1000);
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  return withDate ? `${d.toLocaleDateString()} ${time}` : time;
}

export function since(seconds) {
  return seconds ? `since ${clock(seconds, Date.now() / 1000 - seconds > 86400)} (${ago(seconds)})` : '';
}

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(0)} KiB`;
  return `${(n / 1048576).toFixed(1)} MiB`;
}
