import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../lib/clock.js';
import { AppError } from '../lib/errors.js';
import type { UsageService } from './usage.service.js';
import type { CatalogueService } from './catalogue.service.js';

export interface PortalOptions {
  secret: string;
  ttlMs: number;
  /** the base URL the customer's browser reaches this service at */
  baseUrl: () => string;
}

const USER_ID = /^[A-Za-z0-9_.:@-]{1,64}$/;

/**
 * Customer-portal sessions: a link carries `<payload>.<signature>`, the payload naming one user and
 * an expiry, the signature an HMAC-SHA256 of the payload with the portal secret. Whoever holds the
 * link sees that user's account until it expires, and nothing of anyone else's; the gateway token
 * never reaches a browser.
 */
export class PortalService {
  constructor(
    private readonly opts: PortalOptions,
    private readonly usage: UsageService,
    private readonly catalogue: CatalogueService,
    private readonly clock: Clock,
  ) {}

  private sign(payload: string): string {
    return createHmac('sha256', this.opts.secret).update(`portal-session.v1.${payload}`).digest('base64url');
  }

  /** A signed link for the user, valid for the configured time (one hour). */
  createSession(userId: string): { url: string; expiresAt: string; token: string } {
    const expires = this.clock.now().getTime() + this.opts.ttlMs;
    const payload = Buffer.from(JSON.stringify({ u: userId, e: expires })).toString('base64url');
    const token = `${payload}.${this.sign(payload)}`;
    // In the fragment: a browser sends it to no server (no access log, no Referer holds it); the page's
    // script reads it and sends it as a header.
    return { url: `${this.opts.baseUrl()}/portal#session=${token}`, expiresAt: new Date(expires).toISOString(), token };
  }

  /** The session's user; 401 for a missing, malformed, forged or expired session. */
  verify(token: string | undefined): string {
    const refuse = (message: string) => new AppError('UNAUTHORIZED', message);
    if (!token) throw refuse('missing portal session (X-Portal-Session header)');
    const m = /^([A-Za-z0-9_-]{1,400})\.([A-Za-z0-9_-]{43})$/.exec(token);
    if (!m) throw refuse('malformed portal session');
    const expected = Buffer.from(this.sign(m[1]));
    if (!timingSafeEqual(expected, Buffer.from(m[2]))) throw refuse('portal session signature does not match');
    let claims: { u?: unknown; e?: unknown };
    try {
      claims = JSON.parse(Buffer.from(m[1], 'base64url').toString('utf8'));
    } catch {
      throw refuse('malformed portal session');
    }
    if (typeof claims.u !== 'string' || !USER_ID.test(claims.u) || typeof claims.e !== 'number')
      throw refuse('malformed portal session');
    if (this.clock.now().getTime() >= claims.e) throw refuse('portal session expired: ask for a new link');
    return claims.u;
  }

  /** Calls and cost per business day for each service of the catalogue (the chart's series). */
  async usageByService(userId: string, from?: string, to?: string) {
    const series = await Promise.all(this.catalogue.services.map((s) => this.usage.daily(userId, s.name, from, to)));
    const first = series[0] ?? (await this.usage.daily(userId, undefined, from, to));
    return {
      userId,
      from: first.from,
      to: first.to,
      days: first.days.map((d) => d.day),
      services: series.map((s, i) => ({
        serviceName: this.catalogue.services[i].name,
        calls: s.days.map((d) => d.totalCount),
        cost: s.days.map((d) => d.totalCost),
      })),
    };
  }
}
