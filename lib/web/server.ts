// `calendar-link-filter web`: the built-in web view, an HTTP server behind the site's TLS proxy.
// The only module that imports hono. In: requests; WebSettings; the snapshot store. Out: pages, .ics
// files, 303s after POSTs, and the RSVP/sign-in mails (through lib/web/rsvp.ts and agenda.ts).
// Fails: a bad token is 404 before any store access; a gone snapshot 410; store trouble 503 with
// Retry-After; POSTs with a foreign Origin/Sec-Fetch-Site 403, a wrong type 415, too large 413; rate
// limits 429. A handler bug is a plain 500 page and one log line: the process never dies of a request.
// GET and HEAD never change state (link scanners fetch every link); only a clicked <form method=post> does.

import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { serve, type HttpBindings } from '@hono/node-server';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { LogFn } from '../log.js';
import type { WebSettings } from '../snapshot-config.js';
import { StoreUnavailableError, type SnapshotStore } from '../snapshot-store.js';
import { mintFormToken, mintViewToken, verifyViewToken } from '../snapshot-token.js';
import { addToCalendarCopy } from '../calendar-event.js';
import { validLocale, validZone } from './format.js';
import { loadView, type View } from './load.js';
import { alreadySentPage, CSS_PATH, messagePage, signinLanding, statusPage, STYLESHEET, type PageCtx } from './pages.js';
import { handleRsvp, rsvpOffer } from './rsvp.js';
import { agendaFor, requestSignIn, signIn, signOut, sessionAddress, cookieName } from './agenda.js';
import { html, type SafeHtml } from './html.js';
import { RateLimiter } from './rate-limit.js';
import { addLinks } from './add-links.js';

export const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy': "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'Referrer-Policy': 'same-origin',
  'Cache-Control': 'no-store',
  'X-Robots-Tag': 'noindex, nofollow',
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Permissions-Policy': 'camera=(), microphone=(), geolocation=()',
};

export interface WebDeps {
  settings: WebSettings;
  store: SnapshotStore;
  log: LogFn;
  now?: () => number;
  /** Shared limiter (tests reset it); default: a fresh one per app. */
  limiter?: RateLimiter;
}

type Env = { Bindings: HttpBindings };

export function createWebApp(d: WebDeps): Hono<Env> {
  const s = d.settings;
  const now = d.now ?? Date.now;
  const formKey = s.tokenKeys.get(s.tokenKid) as Buffer;
  const limits = d.limiter ?? new RateLimiter(now);
  const app = new Hono<Env>();

  app.use('*', async (c, next) => {
    const started = now();
    await next();
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) c.res.headers.set(k, v);
    if (c.req.path === CSS_PATH) c.res.headers.set('Cache-Control', 'public, max-age=31536000, immutable');
    if (s.baseUrl.startsWith('https:')) c.res.headers.set('Strict-Transport-Security', 'max-age=31536000');
    // Route names, never paths: a path carries the token.
    d.log('web.request', { route: c.req.routePath, method: c.req.method, status: c.res.status, ms: now() - started });
  });
  app.onError((err, c) => {
    if (err instanceof StoreUnavailableError) {
      d.log('web.store_unavailable', { route: c.req.routePath, reason: err.message });
      c.header('Retry-After', '30');
      return page(c, statusPage('Temporarily unavailable', 'This page is temporarily unavailable. Please try again in a minute.'), 503);
    }
    d.log('web.error', { route: c.req.routePath, error: (err as Error).message });
    return page(c, statusPage('Something went wrong', 'The page could not be shown.'), 500);
  });
  app.notFound((c) => page(c, statusPage('Not found', 'There is nothing at this address.'), 404));

  const ip = (c: Context<Env>): string => {
    const peer = c.env?.incoming?.socket?.remoteAddress ?? 'unknown';
    if (!s.trustedProxies.includes(peer)) return peer;
    // From the right: each trusted proxy appended the address it heard from; the first one that is not a
    // trusted proxy is the client. Entries left of it were written by the client and are never believed.
    const xff = c.req.header('x-forwarded-for')?.split(',').map((x) => x.trim()).filter(Boolean) ?? [];
    let client = peer;
    for (let i = xff.length - 1; i >= 0 && s.trustedProxies.includes(client); i--) client = xff[i] as string;
    return client;
  };
  const ctxOf = (c: Context<Env>): PageCtx => {
    const cookieTz = /(?:^|;\s*)tz=([^;]+)/.exec(c.req.header('cookie') ?? '')?.[1];
    let tz: string | null = null;
    try { tz = cookieTz ? decodeURIComponent(cookieTz) : null; } catch { /* a malformed cookie: the default zone */ }
    const zone = validZone(tz) ?? s.defaultTz;
    const lang = (c.req.header('accept-language') ?? '').split(',').map((x) => x.split(';')[0]!.trim()).find((l) => validLocale(l));
    return { zone, locale: validLocale(lang) ?? validLocale(s.defaultLocale) ?? 'en', path: c.req.path };
  };
  /** ?tz=Zone: a preference cookie, then back to the page without the query (no open redirect). */
  const tzRedirect = (c: Context<Env>): Response | null => {
    const tz = c.req.query('tz');
    if (tz === undefined) return null;
    const z = validZone(tz.trim());
    if (z) c.header('Set-Cookie', `tz=${encodeURIComponent(z)}; Path=/; Max-Age=31536000; SameSite=Lax${s.baseUrl.startsWith('https:') ? '; Secure' : ''}`);
    return c.redirect(c.req.path, 303);
  };
  const tooMany = (c: Context<Env>) => { c.header('Retry-After', '60'); return c.text('Too many requests; try again later.\n', 429); };
  const claimsOf = (c: Context<Env>) => {
    const claims = verifyViewToken(c.req.param('token') ?? '', s.tokenKeys);
    if (!claims) limits.hit('badmac', ip(c), 20, 60_000);
    return claims;
  };
  const notValid = (c: Context<Env>) => (limits.over('badmac', ip(c), 20) ? tooMany(c) : page(c, statusPage('Link not valid', 'This link is not valid. Check that you copied all of it.'), 404));
  const gone = (c: Context<Env>) => page(c, statusPage('No longer available', 'This invitation is no longer available — it expired or was removed. The original mail still has the details.'), 410);
  const view = async (c: Context<Env>): Promise<{ v: View; token: string } | Response> => {
    const claims = claimsOf(c);
    if (!claims) return notValid(c);
    if (!limits.hit('get-ip', ip(c), 120, 60_000) || !limits.hit('get-tok', claims.rid, 30, 60_000)) return tooMany(c);
    const v = await loadView(d.store, s, claims, now());
    if (!v) return gone(c);
    return { v, token: c.req.param('token') as string };
  };
  /** POST checks of the design's §3.7: form type, same-origin by Origin / Sec-Fetch-Site. */
  const postCheck = (c: Context<Env>): Response | null => {
    const type = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/x-www-form-urlencoded') return c.text('Unsupported form encoding.\n', 415);
    const site = c.req.header('sec-fetch-site');
    const origin = c.req.header('origin');
    if (site !== undefined && site !== 'same-origin') return forbidden(c);
    if (origin !== undefined && origin !== 'null' && origin !== s.origin) return forbidden(c);
    if (origin === 'null' && site !== 'same-origin') return forbidden(c);
    return null;
  };
  const forbidden = (c: Context<Env>) => page(c, statusPage('Not allowed', 'This form must be sent from the invitation page itself.'), 403);
  const limit = bodyLimit({ maxSize: 8 * 1024, onError: (c) => c.text('Request too large.\n', 413) });
  const form = async (c: Context<Env>) => {
    const body = await c.req.parseBody();
    return Object.fromEntries(Object.entries(body).filter(([, v]) => typeof v === 'string')) as Record<string, string>;
  };

  app.get('/robots.txt', (c) => c.text('User-agent: *\nDisallow: /\n'));
  app.get(CSS_PATH, (c) => c.body(STYLESHEET, 200, { 'Content-Type': 'text/css; charset=utf-8' }));
  app.get('/healthz', async (c) => {
    try { await d.store.ping(1000); return c.json({ status: 'ok' }); } catch { return c.json({ status: 'fail', failed: ['store'] }, 503); }
  });

  app.get('/m/:token', async (c) => {
    const r = await view(c);
    if (r instanceof Response) return r;
    const redirect = tzRedirect(c);
    if (redirect) return redirect;
    const { v, token } = r;
    const offer = rsvpOffer(v, s);
    const ctx = ctxOf(c);
    const sent = c.req.query('sent') ?? null;
    const links = v.event ? addLinks(v.event, ctx.zone) : { google: null, outlook: null };
    return page(c, messagePage(v, {
      ctx, token, offer, sent,
      formToken: offer.ok ? mintFormToken(formKey, v.rid, 'rsvp', offer.seq, now()) : null,
      currentUrl: v.isCurrent ? null : `/m/${mintViewToken(s.tokenKeys, s.tokenKid, v.r, v.current.rid)}`,
      showAddresses: s.showAddresses, agenda: s.agendaAuth,
      signinToken: s.agendaAuth === 'mail' && v.recipient ? mintFormToken(formKey, v.rid, 'signin', 0, now()) : null,
      googleUrl: links.google, outlookUrl: links.outlook,
    }));
  });

  const ics = (name: string, method: string | null, body: string) => new Response(body, {
    status: 200,
    headers: { 'Content-Type': `text/calendar; charset=utf-8${method ? `; method=${method}` : ''}`, 'Content-Disposition': `attachment; filename="${name}"` },
  });
  app.get('/m/:token/invite.ics', async (c) => {
    const r = await view(c);
    if (r instanceof Response) return r;
    if (!r.v.ical) return gone(c);
    return ics('invite.ics', /^[A-Z-]{1,20}$/.test(r.v.snap.meth ?? '') ? r.v.snap.meth! : null, r.v.ical);
  });
  app.get('/m/:token/event.ics', async (c) => {
    const r = await view(c);
    if (r instanceof Response) return r;
    const copy = r.v.current.ical ? addToCalendarCopy(r.v.current.ical) : null;
    if (!copy) return gone(c);
    return ics('event.ics', null, copy);
  });

  app.post('/m/:token/rsvp', limit, async (c) => {
    const bad = postCheck(c);
    if (bad) return bad;
    const r = await view(c);
    if (r instanceof Response) return r;
    const { v, token } = r;
    if (!limits.hit('rsvp-tok', v.rid, 5, 60_000)) return tooMany(c);
    const f = await form(c);
    const out = await handleRsvp(v, f, s, d.store, formKey, now());
    const base = `/m/${token}`;
    d.log('web.rsvp', { outcome: out.kind, id: v.rid.slice(0, 6), ...(out.kind === 'failed' ? { response: out.response } : {}) });
    switch (out.kind) {
      case 'sent': return c.redirect(`${base}?sent=${out.partstat}`, 303);
      case 'already-sent': return page(c, alreadySentPage(base, out.partstat, { f: f.f ?? '', comment: f.comment ?? '' }));
      case 'busy': return page(c, statusPage('Already sending', 'Your reply is being sent right now. Reload the invitation in a moment.', undefined, backLink(base)), 409);
      case 'bad-form': return page(c, statusPage('Please check the form', out.why, undefined, backLink(base)), 400);
      case 'refused': return page(c, statusPage('No reply possible', out.why, undefined, backLink(base)), 409);
      case 'failed': c.header('Retry-After', '60'); return page(c, statusPage('Not sent', 'Couldn’t send right now — nothing was sent; try again.', undefined, backLink(base)), 503);
    }
  });

  app.post('/m/:token/signin', limit, async (c) => {
    const bad = postCheck(c);
    if (bad) return bad;
    const r = await view(c);
    if (r instanceof Response) return r;
    if (s.agendaAuth !== 'mail' || !r.v.recipient) return c.notFound();
    const f = await form(c);
    const res = await requestSignIn(r.v, f.f, { settings: s, store: d.store, formKey, limits, ip: ip(c), now: now() });
    d.log('web.signin_requested', { outcome: res.kind, id: r.v.rid.slice(0, 6) });
    if (res.kind === 'limited') return tooMany(c);
    if (res.kind === 'bad-form') return page(c, statusPage('Please try again', 'The form has expired. Reload the invitation and try again.', undefined, backLink(`/m/${r.token}`)), 400);
    if (res.kind === 'failed') return page(c, statusPage('Not sent', 'Couldn’t send the sign-in mail right now; try again later.', undefined, backLink(`/m/${r.token}`)), 503);
    return page(c, statusPage('Check your mail', 'We sent a sign-in link to the address this invitation reached. It works once, for 15 minutes.', undefined, backLink(`/m/${r.token}`)));
  });
  app.get('/s/:otp', (c) => page(c, signinLanding(c.req.path)));
  app.post('/s/:otp', limit, async (c) => {
    const bad = postCheck(c);
    if (bad) return bad;
    const sid = await signIn(c.req.param('otp'), { settings: s, store: d.store, now: now() });
    if (!sid) return page(c, statusPage('Link not valid', 'This sign-in link was already used or has expired. Ask for a new one from an invitation.'), 410);
    c.header('Set-Cookie', `${cookieName(s)}=${sid}; Path=/; HttpOnly; SameSite=Lax; Max-Age=2592000${s.baseUrl.startsWith('https:') ? '; Secure' : ''}`);
    return c.redirect('/c', 303);
  });
  app.post('/c/signout', limit, async (c) => {
    const bad = postCheck(c);
    if (bad) return bad;
    await signOut(c.req.header('cookie'), { settings: s, store: d.store });
    c.header('Set-Cookie', `${cookieName(s)}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0${s.baseUrl.startsWith('https:') ? '; Secure' : ''}`);
    return page(c, statusPage('Signed out', 'You are signed out.'));
  });
  app.get('/c', async (c) => {
    const redirect = tzRedirect(c);
    if (redirect) return redirect;
    const peer = c.env?.incoming?.socket?.remoteAddress ?? '';
    const who = s.agendaAuth === 'proxy'
      ? (s.proxyUserHeader && s.trustedProxies.includes(peer) ? c.req.header(s.proxyUserHeader)?.trim() || null : null)
      : await sessionAddress(c.req.header('cookie'), { settings: s, store: d.store });
    if (!who) return page(c, statusPage('Sign in first', s.agendaAuth === 'proxy' ? 'Your sign-in did not reach this page.' : 'Open one of your invitations and ask for a sign-in link.'), 401);
    return page(c, await agendaFor(who, c.req.query('from'), c.req.query('days'), { settings: s, store: d.store, ctx: ctxOf(c), now: now(), signout: s.agendaAuth === 'mail' }));
  });
  app.get('/m/:token/calendar', async (c) => {
    if (s.agendaAuth !== 'link') return c.notFound();
    const r = await view(c);
    if (r instanceof Response) return r;
    const redirect = tzRedirect(c);
    if (redirect) return redirect;
    if (!r.v.recipient) return gone(c);
    return page(c, await agendaFor(r.v.recipient, c.req.query('from'), c.req.query('days'), { settings: s, store: d.store, ctx: ctxOf(c), now: now(), signout: false }));
  });
  return app;
}

function backLink(base: string): SafeHtml {
  return html`<p><a href="${base}">Back to the invitation</a></p>`;
}

function page(c: Context<Env>, body: SafeHtml, status = 200): Response {
  return c.html(body.value, status as 200);
}

export interface WebServer {
  port: number;
  host: string;
  close(): Promise<void>;
}

/** Listen on host:port (0 = any free port); requests are bounded (headers 10 s, whole request 30 s). */
export function startWebServer(d: WebDeps, host: string, port: number): Promise<WebServer> {
  const app = createWebApp(d);
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, hostname: host, port, serverOptions: { requestTimeout: 30_000, headersTimeout: 10_000, keepAliveTimeout: 5_000 } }) as Server;
    server.once('error', reject);
    server.once('listening', () => {
      server.off('error', reject);
      const addr = server.address() as AddressInfo;
      resolve({
        port: addr.port,
        host,
        close: () => new Promise<void>((done) => {
          server.close(() => done());
          server.closeAllConnections?.();
        }),
      });
    });
  });
}
