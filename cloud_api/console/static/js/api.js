// Calls to the API with the key from sessionStorage as a Bearer token, and Server-Sent Events
// read with fetch (EventSource cannot send an Authorization header).

const KEY = 'printermaster.apiKey';

export const auth = {
  get key() { return sessionStorage.getItem(KEY); },
  set(key) { sessionStorage.setItem(KEY, key); },
  clear() { sessionStorage.removeItem(KEY); },
};

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || (status === 0 ? 'NETWORK' : 'INTERNAL');
    this.jobId = error.job_id || null;
    this.retryable = Boolean(error.retryable);
  }
}

function url(path, query) {
  const u = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '' && v !== false) u.searchParams.set(k, v);
  }
  return u;
}

function headers(accept) {
  return { Authorization: `Bearer ${auth.key || ''}`, Accept: accept };
}

function unauthorized() {
  window.dispatchEvent(new CustomEvent('pm:unauthorized'));
}

// A 401 signs the user out everywhere (event 'pm:unauthorized'), except where the caller asks
// to handle it itself (the sign-in form, trying a key).
export async function api(path, { method = 'GET', query, signal, handle401 = false } = {}) {
  let res;
  try {
    res = await fetch(url(path, query), { method, headers: headers('application/json'), signal });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, { error: { message: 'The API cannot be reached.', code: 'NETWORK' } });
  }
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!res.ok) {
    if (res.status === 401 && !handle401) unauthorized();
    throw new ApiError(res.status, body);
  }
  return body;
}

// Reads a Server-Sent Events stream until it ends (resolves) or fails (rejects);
// onEvent(type, data) gets each event with its JSON data parsed.
export async function sse(path, { query, signal, onEvent }) {
  const res = await fetch(url(path, query), { headers: headers('text/event-stream'), signal });
  if (!res.ok) {
    if (res.status === 401) unauthorized();
    let body = null;
    try { body = await res.json(); } catch { body = null; }
    throw new ApiError(res.status, body);
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let type = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) type = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (!data.length) continue; // a comment (keepalive)
      let parsed = data.join('\n');
      try { parsed = JSON.parse(parsed); } catch { /* plain text */ }
      onEvent(type, parsed);
    }
  }
}
