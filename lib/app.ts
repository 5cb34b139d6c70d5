// The app object: config, logger and the hook registry with the built-in hooks loaded.
// In: a checked Config. Out: an App whose hooks are registered in the order config.hooks lists.
// Fails: an unknown hook name, or a hook whose init throws (bad template, bad secret …), stops
// the start with a message naming the hook.

import type { Config } from './config.js';
import { HookRegistry, type App, type HookModule } from './hooks.js';
import type { LogFn } from './log.js';
import calendarClassify from '../hooks/calendar-classify.js';
import customFormClassify from '../hooks/custom-form-classify.js';
import linkResolve, { closeLinkResolve } from '../hooks/link-resolve.js';
import footerRender from '../hooks/footer-render.js';

/** Built-in hooks by name; `hooks` in the config picks and orders them. */
export const BUILTIN_HOOKS: Record<string, HookModule> = {
  'calendar-classify': calendarClassify,
  'custom-form-classify': customFormClassify,
  'link-resolve': linkResolve,
  'footer-render': footerRender,
};

export interface FilterApp extends App {
  config: Config;
  hooks: HookRegistry;
}

export async function createApp(config: Config, log: LogFn): Promise<FilterApp> {
  const app: FilterApp = { config, log, hooks: new HookRegistry(config.hook_timeout) };
  for (const name of config.hooks) {
    const mod = BUILTIN_HOOKS[name];
    let failure: Error | null = null;
    if (!mod) failure = new Error(`unknown hook "${name}" in hooks (known: ${Object.keys(BUILTIN_HOOKS).join(', ')})`);
    else {
      try {
        await mod.init(app);
      } catch (err) {
        failure = new Error(`hook ${name}: ${(err as Error).message}`);
      }
    }
    if (failure) {
      // hooks started before this one may hold connections (Redis) that would keep the process
      // alive: `filter` would hang instead of exiting 78
      await closeApp(app).catch(() => undefined);
      throw failure;
    }
  }
  return app;
}

/** Release what hooks hold (Redis connections), so a command can end and a server stop cleanly. */
export async function closeApp(app: FilterApp): Promise<void> {
  await closeLinkResolve(app);
}
