// When a long-running command stops: the first SIGTERM or SIGINT. In: the logger and the event prefix
// ("server", "milter", "web"). Out: a promise of the signal's name. A repeated signal is logged and
// ignored: the stop under way is already bounded by shutdown_timeout, and dying on it would cut
// transactions off without a reply (the MTA retries: duplicates). SIGHUP, which would kill a Node
// process, is logged and ignored too: there is no reload, a restart applies new settings.

import type { LogFn } from './log.js';

export function stopSignal(log: LogFn, prefix: string): Promise<string> {
  return new Promise((resolve) => {
    let first: string | null = null;
    const onStop = (signal: string) => {
      if (first) return log(`${prefix}.signal_ignored`, { signal, note: `already stopping (${first}); the grace period bounds the stop` });
      first = signal;
      resolve(signal);
    };
    const onHup = () => log(`${prefix}.sighup`, { note: 'ignored: there is no reload; restart to apply new settings' });
    process.on('SIGTERM', onStop);
    process.on('SIGINT', onStop);
    process.on('SIGHUP', onHup);
  });
}
