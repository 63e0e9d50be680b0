/*
 * The payment service, simulated: a real gRPC server for proto/payment/v1/payment.proto, a pay page
 * per payment with a Pay button that sends the signed callback, and a control API with which tests
 * make it misbehave (fail or stall CreatePayment; close or fail a payment; send callbacks lost, forged,
 * stale, duplicated, concurrent or delayed).
 */
import { randomUUID } from 'node:crypto';
import type { Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import express from 'express';
import {
  loadPaymentProto,
  type CreatePaymentRequest,
  type CreatePaymentReply,
  type GetPaymentRequest,
  type GetPaymentReply,
  type PaymentStatus,
} from '../src/payment/payment.grpc.js';
import { signPayload } from '../src/lib/payment-signature.js';
import { formatMoney, centsToMicros } from '../src/lib/money.js';

export interface SimulatedPayment {
  paymentId: string;
  orderId: string;
  userId: string;
  amountCents: string;
  currency: string;
  method: string;
  notifyUrl: string;
  status: PaymentStatus;
  paidAt: number;
}

export type CallbackMode = 'normal' | 'lost' | 'forged' | 'stale' | 'duplicate' | 'concurrent' | 'delayed';

export interface Behaviour {
  /** how CreatePayment answers */
  createPayment: 'ok' | 'fail' | 'stall';
  /** how a payment's callback is delivered */
  callback: CallbackMode;
  /** copies sent for 'duplicate' / 'concurrent' */
  copies: number;
  /** wait before sending, for 'delayed' */
  delayMs: number;
}

export interface CallbackResult {
  status: number;
  body: unknown;
}

const DEFAULT_BEHAVIOUR: Behaviour = { createPayment: 'ok', callback: 'normal', copies: 2, delayMs: 1000 };

export interface SimulatorOptions {
  host?: string;
  grpcPort?: number;
  httpPort?: number;
  callbackSecret: string;
  /** base of pay_url when the listen address is not what a browser reaches (a container) */
  publicUrl?: string;
  /**
   * Port of the control API when `host` is not loopback (it then gets its own listener on
   * 127.0.0.1; 0 picks a free port). On a loopback host it is served beside the pay pages.
   */
  controlPort?: number;
}

const LOOPBACK = ['127.0.0.1', '::1', 'localhost'];

export class PaymentSimulator {
  readonly payments = new Map<string, SimulatedPayment>();
  private readonly byOrder = new Map<string, string>();
  behaviour: Behaviour = { ...DEFAULT_BEHAVIOUR };
  private grpcServer?: grpc.Server;
  private httpServer?: HttpServer;
  private controlServer?: HttpServer;
  private readonly stalled = new Set<() => void>();
  grpcAddr = '';
  httpUrl = '';
  /** base of the control API (`${controlUrl}/payments`, ...): always a loopback address */
  controlUrl = '';

  constructor(private readonly opts: SimulatorOptions) {}

  async start(): Promise<this> {
    const host = this.opts.host ?? '127.0.0.1';
    const Service = loadPaymentProto();
    const server = new grpc.Server();
    server.addService(Service.service, {
      CreatePayment: (
        call: grpc.ServerUnaryCall<CreatePaymentRequest, CreatePaymentReply>,
        cb: grpc.sendUnaryData<CreatePaymentReply>,
      ) => this.createPayment(call.request, cb),
      GetPayment: (
        call: grpc.ServerUnaryCall<GetPaymentRequest, GetPaymentReply>,
        cb: grpc.sendUnaryData<GetPaymentReply>,
      ) => this.getPayment(call.request, cb),
    });
    const grpcPort = await new Promise<number>((res, rej) =>
      server.bindAsync(`${host}:${this.opts.grpcPort ?? 0}`, grpc.ServerCredentials.createInsecure(), (err, port) =>
        err ? rej(err) : res(port),
      ),
    );
    this.grpcServer = server;
    this.grpcAddr = `${host}:${grpcPort}`;

    const listen = (app: express.Express, port: number, on: string) =>
      new Promise<HttpServer>((res, rej) => {
        const s = app.listen(port, on, (err?: Error) => (err ? rej(err) : res(s)));
      });
    // The control API pays any payment and signs with the real callback secret: it never leaves
    // this machine, whatever the pay pages listen on.
    const app = this.httpApp();
    if (LOOPBACK.includes(host)) app.use('/control', this.controlRouter());
    this.httpServer = await listen(app, this.opts.httpPort ?? 0, host);
    const httpPort = (this.httpServer.address() as AddressInfo).port;
    this.httpUrl = this.opts.publicUrl ?? `http://${host}:${httpPort}`;
    if (LOOPBACK.includes(host)) {
      this.controlUrl = `http://${host}:${httpPort}/control`;
    } else {
      const control = express();
      control.use(express.json());
      control.use('/control', this.controlRouter());
      this.controlServer = await listen(control, this.opts.controlPort ?? 0, '127.0.0.1');
      this.controlUrl = `http://127.0.0.1:${(this.controlServer.address() as AddressInfo).port}/control`;
    }
    return this;
  }

  async stop(): Promise<void> {
    for (const release of this.stalled) release();
    await new Promise<void>((res) => (this.grpcServer ? this.grpcServer.tryShutdown(() => res()) : res()));
    this.grpcServer?.forceShutdown();
    for (const server of [this.httpServer, this.controlServer]) {
      await new Promise<void>((res) => (server ? server.close(() => res()) : res()));
      server?.closeAllConnections();
    }
  }

  reset(): void {
    this.behaviour = { ...DEFAULT_BEHAVIOUR };
  }

  private createPayment(req: CreatePaymentRequest, cb: grpc.sendUnaryData<CreatePaymentReply>): void {
    if (this.behaviour.createPayment === 'fail')
      return cb({ code: grpc.status.UNAVAILABLE, details: 'simulated outage' });
    if (this.behaviour.createPayment === 'stall') {
      // Never answers in time; released (with an error) when the simulator stops.
      const release = () => cb({ code: grpc.status.UNAVAILABLE, details: 'stalled' });
      this.stalled.add(release);
      return;
    }
    if (!req.order_id || !/^\d+$/.test(req.amount) || BigInt(req.amount) <= 0n)
      return cb({ code: grpc.status.INVALID_ARGUMENT, details: 'order_id and a positive amount are required' });
    const existing = this.byOrder.get(req.order_id);
    const paymentId = existing ?? `pay_${randomUUID().replace(/-/g, '')}`;
    if (!existing) {
      this.payments.set(paymentId, {
        paymentId,
        orderId: req.order_id,
        userId: req.user_id,
        amountCents: req.amount,
        currency: req.currency,
        method: req.method,
        notifyUrl: req.notify_url,
        status: 'PENDING',
        paidAt: 0,
      });
      this.byOrder.set(req.order_id, paymentId);
    }
    const payUrl = `${this.httpUrl}/pay/${paymentId}`;
    cb(null, {
      payment_id: paymentId,
      status: 'PENDING',
      pay_url: payUrl,
      pay_code:
        req.method === 'WECHATPAY'
          ? `weixin://wxpay/bizpayurl?pr=${paymentId}`
          : `https://qr.alipay.example/${paymentId}`,
      pay_params: { payment_id: paymentId, method: req.method },
    });
  }

  private getPayment(req: GetPaymentRequest, cb: grpc.sendUnaryData<GetPaymentReply>): void {
    const id = req.payment_id || (req.order_id ? this.byOrder.get(req.order_id) : undefined);
    const p = id ? this.payments.get(id) : undefined;
    if (!p) return cb({ code: grpc.status.NOT_FOUND, details: 'no such payment' });
    cb(null, {
      payment_id: p.paymentId,
      order_id: p.orderId,
      status: p.status,
      amount: p.amountCents,
      currency: p.currency,
      paid_at: String(p.paidAt),
    });
  }

  /** Marks a payment paid and delivers its callback as the behaviour (or `mode`) says. */
  async pay(
    paymentId: string,
    mode: CallbackMode = this.behaviour.callback,
    overrides: Record<string, unknown> = {},
  ): Promise<CallbackResult[]> {
    const p = this.payments.get(paymentId);
    if (!p) throw new Error(`no payment ${paymentId}`);
    if (p.status !== 'SUCCESS') {
      p.status = 'SUCCESS';
      p.paidAt = Math.floor(Date.now() / 1000);
    }
    return this.deliver(p, 'success', mode, overrides);
  }

  /** Closes a payment (the payer gave up) and delivers its callback as `mode` says. */
  async close(paymentId: string, mode: CallbackMode = 'normal'): Promise<CallbackResult[]> {
    const p = this.payments.get(paymentId);
    if (!p) throw new Error(`no payment ${paymentId}`);
    p.status = 'CLOSED';
    return this.deliver(p, 'closed', mode, {});
  }

  /** Fails a payment (declined by the bank) and delivers its callback as `mode` says. */
  async fail(paymentId: string, mode: CallbackMode = 'normal'): Promise<CallbackResult[]> {
    const p = this.payments.get(paymentId);
    if (!p) throw new Error(`no payment ${paymentId}`);
    p.status = 'FAILED';
    return this.deliver(p, 'failed', mode, {});
  }

  private async deliver(
    p: SimulatedPayment,
    status: string,
    mode: CallbackMode,
    overrides: Record<string, unknown>,
  ): Promise<CallbackResult[]> {
    const body = JSON.stringify({
      order_id: p.orderId,
      payment_id: p.paymentId,
      amount: formatMoney(centsToMicros(BigInt(p.amountCents))),
      currency: p.currency,
      status,
      paid_at: p.paidAt || undefined,
      ...overrides,
    });
    const now = Math.floor(Date.now() / 1000);
    const send = async (secret = this.opts.callbackSecret, t = now): Promise<CallbackResult> => {
      const res = await fetch(p.notifyUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-payment-signature': signPayload(secret, body, t) },
        body,
      });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* keep the text */
      }
      return { status: res.status, body: parsed };
    };
    switch (mode) {
      case 'lost':
        return [];
      case 'forged':
        return [await send('not-the-secret')];
      case 'stale':
        return [await send(undefined, now - 600)];
      case 'duplicate': {
        const out: CallbackResult[] = [];
        for (let i = 0; i < this.behaviour.copies; i++) out.push(await send());
        return out;
      }
      case 'concurrent':
        return Promise.all(Array.from({ length: this.behaviour.copies }, () => send()));
      case 'delayed':
        setTimeout(() => void send().catch(() => undefined), this.behaviour.delayMs);
        return [];
      default:
        return [await send()];
    }
  }

  private httpApp() {
    const app = express();
    app.use(express.json());
    app.use(express.urlencoded({ extended: false }));
    const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
    const page = (
      title: string,
      body: string,
    ) => `<!doctype html><html><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}button{font-size:1.2rem;padding:.6rem 2rem;cursor:pointer}
.amount{font-size:2rem;font-weight:600}.muted{color:#666}</style></head><body>${body}</body></html>`;

    app.get('/pay/:id', (req, res) => {
      const p = this.payments.get(req.params.id);
      if (!p) return res.status(404).send(page('Not found', '<h1>No such payment</h1>'));
      const amount = `${formatMoney(centsToMicros(BigInt(p.amountCents)))} ${esc(p.currency)}`;
      res.send(
        page(
          'Pay',
          `<h1>Payment simulator</h1>
<p class="muted">${p.method === 'WECHATPAY' ? 'WeChat Pay' : 'Alipay'} · order ${esc(p.orderId)}</p>
<p class="amount" id="amount">${amount}</p>
<p>Status: <strong id="status">${p.status}</strong></p>
${p.status === 'PENDING' ? `<form method="post" action="/pay/${esc(p.paymentId)}/confirm"><button id="pay" type="submit">Pay</button></form>` : ''}`,
        ),
      );
    });

    app.post('/pay/:id/confirm', async (req, res) => {
      try {
        const results = await this.pay(req.params.id);
        const r = results[0];
        res.send(
          page(
            'Paid',
            `<h1>Paid</h1><p>Status: <strong id="status">SUCCESS</strong></p>
<p class="muted">Callback to billing: ${r ? `HTTP ${r.status}` : 'not sent (callback mode: ' + esc(this.behaviour.callback) + ')'}</p>`,
          ),
        );
      } catch (err) {
        res.status(404).send(page('Error', `<h1>${esc((err as Error).message)}</h1>`));
      }
    });

    return app;
  }

  /** Control API (tests and demos), mounted at /control. */
  private controlRouter(): express.Router {
    const app = express.Router();
    app.get('/payments', (_req, res) => res.json([...this.payments.values()]));
    app.post('/behaviour', (req, res) => {
      this.behaviour = { ...this.behaviour, ...(req.body as Partial<Behaviour>) };
      res.json(this.behaviour);
    });
    app.post('/reset', (_req, res) => {
      this.reset();
      res.json(this.behaviour);
    });
    app.post('/payments/:id/pay', async (req, res) => {
      try {
        res.json(
          await this.pay(
            req.params.id,
            (req.body?.mode as CallbackMode) ?? this.behaviour.callback,
            req.body?.overrides ?? {},
          ),
        );
      } catch (err) {
        res.status(404).json({ error: (err as Error).message });
      }
    });
    for (const end of ['close', 'fail'] as const) {
      app.post(`/payments/:id/${end}`, async (req, res) => {
        try {
          res.json(await this[end](req.params.id, (req.body?.mode as CallbackMode) ?? 'normal'));
        } catch (err) {
          res.status(404).json({ error: (err as Error).message });
        }
      });
    }
    return app;
  }
}
