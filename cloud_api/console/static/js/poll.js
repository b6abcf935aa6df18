// Repeat an async refresh while the page is shown: never two at once, paused in a hidden tab.

export function every(ms, refresh) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try { await refresh(); } catch (err) { if (err.name !== 'AbortError') console.warn(err); }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}
