import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { startHarness, seedBalance, GATEWAY_TOKEN, type Harness } from '../support/harness.js';

const EXPORT = '/api/v1/billing/records/export';
const auth = { authorization: `Bearer ${GATEWAY_TOKEN}` };

/** A small RFC 4180 reader (quoted fields, doubled quotes, CRLF), so the test does not trust the writer. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(cell);
      cell = '';
    } else if (c === '\r' && text[i + 1] === '\n') {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
      i++;
    } else cell += c;
  }
  if (cell !== '' || row.length > 0) throw new Error('CSV does not end with CRLF');
  return rows;
}

/**
 * Downloads a CSV export in a child process, keeping only the unfinished line, and reports the row
 * count, the sum of the amount column (micro-units), the 'asset' rows and whether times ascend.
 */
const CHILD_READER = `
const [url, token] = process.argv.slice(1);
const res = await fetch(url, { headers: { authorization: 'Bearer ' + token } });
const decoder = new TextDecoder();
let rest = '', lines = 0, amountSum = 0n, assetRows = 0, last = '', ordered = true;
for await (const chunk of res.body) {
  const parts = (rest + decoder.decode(chunk, { stream: true })).split('\\r\\n');
  rest = parts.pop();
  for (const line of parts) {
    if (lines++ === 0) continue;
    const cells = line.split(',');
    const [units, frac = ''] = cells[7].split('.');
    amountSum += BigInt(units) * 1000000n + BigInt(frac.padEnd(6, '0'));
    if (cells[2] === 'asset') assetRows++;
    if (cells[9] < last) ordered = false;
    last = cells[9];
  }
}
process.stdout.write(JSON.stringify({ status: res.status, lines, amountSum: String(amountSum), assetRows, ordered, rest }));
`;

function readInChild(
  url: string,
): Promise<{ status: number; lines: number; amountSum: string; assetRows: number; ordered: boolean; rest: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--input-type=module', '-e', CHILD_READER, url, GATEWAY_TOKEN],
      { maxBuffer: 1 << 20 },
      (err, stdout) => (err ? reject(err) : resolve(JSON.parse(stdout))),
    );
  });
}

describe('CSV export of consumption records', function () {
  this.timeout(180_000);
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(() => h.stop());

  it('escapes formula-like ids and quotes per RFC 4180, with the download headers', async () => {
    const user = h.user('hostile');
    await seedBalance(h, user, 10_000_000n);
    const hostile = [
      '=HYPERLINK("http://evil.example","x")',
      '+1+1',
      '-2+3',
      '@SUM(A1:A9)',
      'plain, with "quotes"',
      '=1,2',
    ];
    for (const requestId of hostile) {
      const r = await h.post('/internal/v1/billing/deduct', {
        request_id: requestId,
        user_id: user,
        service_name: 'passport',
      });
      expect(r.status, requestId).to.equal(200);
    }
    await h.drain();
    // Tab and CR cannot come through the API (request ids are printable ASCII): put them in directly.
    const at = new Date();
    await h.running.ctx.db('consumption_records').insert(
      ['\tTAB', '\rCR'].map((requestId, i) => ({
        record_id: `${h.tag}-ctl-${i}`,
        user_id: user,
        request_id: requestId,
        service_name: 'passport',
        type: 'free',
        count: 1,
        free_count: 1,
        paid_count: 0,
        amount: 0,
        period: '202611',
        created_at: at,
      })),
    );

    const res = await fetch(`${h.url}${EXPORT}?user_id=${encodeURIComponent(user)}`, { headers: auth });
    expect(res.status).to.equal(200);
    expect(res.headers.get('content-type')).to.match(/^text\/csv/);
    expect(res.headers.get('content-disposition')).to.equal(`attachment; filename="records-${user}.csv"`);
    const text = await res.text();
    const rows = parseCsv(text);
    expect(rows[0]).to.deep.equal([
      'record_id',
      'request_id',
      'service_name',
      'type',
      'count',
      'free_count',
      'paid_count',
      'amount',
      'unit_price',
      'refunded_count',
      'refunded_amount',
      'created_at',
    ]);
    const ids = rows.slice(1).map((r) => r[1]);
    expect(ids).to.have.members([
      `'=HYPERLINK("http://evil.example","x")`,
      "'+1+1",
      "'-2+3",
      "'@SUM(A1:A9)",
      'plain, with "quotes"',
      "'=1,2",
      "'\tTAB",
      "'\rCR",
    ]);
    // No cell of the file starts like a formula once read back.
    for (const row of rows) for (const cell of row) expect(cell, cell).not.to.match(/^[=+\-@\t\r]/);
    // Oldest first, every record once.
    const times = rows.slice(1).map((r) => r[9]);
    expect([...times].sort()).to.deep.equal(times);

    // Records past the retention horizon move to the archive table: the export still has each once, in order.
    const db = h.running.ctx.db;
    const oldest = await db('consumption_records')
      .where('user_id', user)
      .orderBy([{ column: 'created_at' }, { column: 'id' }])
      .limit(3)
      .pluck('id');
    await db.raw(
      `INSERT INTO consumption_records_archive SELECT r.*, NOW(3) FROM consumption_records r WHERE id IN (${oldest.map(() => '?').join(',')})`,
      oldest,
    );
    await db('consumption_records').whereIn('id', oldest).delete();
    const again = await fetch(`${h.url}${EXPORT}?user_id=${encodeURIComponent(user)}`, { headers: auth });
    expect(parseCsv(await again.text())).to.deep.equal(rows);
  });

  it('checks its inputs before any work: real dates, from <= to, known service, the gateway token', async () => {
    const user = h.user('bounds');
    const bad = async (query: Record<string, string>, status: number, code: number) => {
      const r = await h.get(EXPORT, query);
      expect(r.status, JSON.stringify(query)).to.equal(status);
      expect(r.body.code, JSON.stringify(query)).to.equal(code);
    };
    await bad({ user_id: user, from: '2026-02-30' }, 400, 40000);
    await bad({ user_id: user, to: '2026-13-01' }, 400, 40000);
    await bad({ user_id: user, from: '2026-11-02', to: '2026-11-01' }, 400, 40000);
    await bad({ user_id: user, from: '1969-12-31' }, 400, 40000);
    await bad({ user_id: user, from: 'yesterday' }, 400, 40000);
    await bad({ user_id: user, service_name: 'nope' }, 400, 10006);
    await bad({}, 400, 40000);
    await bad({ user_id: 'a b' }, 400, 40000);
    const anon = await fetch(`${h.url}${EXPORT}?user_id=${user}`);
    expect(anon.status).to.equal(401);
    expect((await anon.json()).code).to.equal(40100);
    // A single day is a valid range, and a user without records gets the header alone.
    const empty = await fetch(`${h.url}${EXPORT}?user_id=${user}&from=2026-11-01&to=2026-11-01`, { headers: auth });
    expect(empty.status).to.equal(200);
    expect(empty.headers.get('content-disposition')).to.equal(
      `attachment; filename="records-${user}-2026-11-01_to_2026-11-01.csv"`,
    );
    expect(parseCsv(await empty.text())).to.have.length(1);
  });

  it('streams 1,000,000 records with the API process memory flat, every row once, filters applied', async function () {
    this.timeout(300_000);
    const user = h.user('million');
    const db = h.running.ctx.db;
    const TOTAL = 1_000_000;
    const CHUNK = 100_000;
    const started = Date.now();
    // Server-side generated rows (MariaDB's sequence engine), in chunks of 100,000: one second apart
    // from 2026-09-01 00:00 UTC, amount = n mod 1000 micro-units, every 10th row an 'asset' call.
    for (let base = 0; base < TOTAL; base += CHUNK) {
      await db.raw(
        `INSERT INTO consumption_records
           (record_id, user_id, request_id, service_name, type, count, free_count, paid_count, amount, unit_price, period, created_at)
         SELECT CONCAT(?, '-', n), ?, CONCAT('req-', n), IF(n MOD 10 = 0, 'asset', 'passport'), 'balance', 1, 0, 1,
                n MOD 1000, 1000, '202609', TIMESTAMPADD(SECOND, n, '2026-09-01 00:00:00')
         FROM (SELECT seq + ? AS n FROM seq_1_to_${CHUNK}) AS s`,
        [h.tag, user, base],
      );
    }
    const insertMs = Date.now() - started;

    // The file is read by a child process, so that what is sampled here is the API's memory alone.
    const sample = () => process.memoryUsage();
    const baseline = sample();
    let peakRss = baseline.rss;
    let peakHeap = baseline.heapUsed;
    const sampler = setInterval(() => {
      const m = sample();
      peakRss = Math.max(peakRss, m.rss);
      peakHeap = Math.max(peakHeap, m.heapUsed);
    }, 25);
    const exportStarted = Date.now();
    let result: { status: number; lines: number; amountSum: string; assetRows: number; ordered: boolean; rest: string };
    try {
      result = await readInChild(`${h.url}${EXPORT}?user_id=${encodeURIComponent(user)}`);
    } finally {
      clearInterval(sampler);
    }
    const exportMs = Date.now() - exportStarted;
    const mb = (n: number) => (n / 1048576).toFixed(1);
    console.log(
      `      insert ${TOTAL} rows: ${insertMs} ms; export: ${exportMs} ms; API rss ${mb(baseline.rss)} MB` +
        ` peak +${mb(peakRss - baseline.rss)} MB, heap used ${mb(baseline.heapUsed)} MB peak +${mb(peakHeap - baseline.heapUsed)} MB`,
    );
    const { lines, amountSum, assetRows, ordered } = result;
    expect(result.status).to.equal(200);
    expect(result.rest).to.equal('');
    expect(lines).to.equal(TOTAL + 1);
    expect(ordered).to.equal(true);
    const expected = await db('consumption_records').where('user_id', user).sum({ s: 'amount' }).first();
    expect(BigInt(amountSum)).to.equal(BigInt(expected!.s as string));
    expect(assetRows).to.equal(TOTAL / 10);
    // The whole file is ~90 MB of text (and several times that as row objects): building it in memory
    // would blow through this bound; streaming page by page stays far below it.
    expect((peakRss - baseline.rss) / 1048576).to.be.below(100);

    // Filters: one service, one business day (Asia/Shanghai: 2026-09-02 is 16:00Z on the 1st to 16:00Z on the 2nd).
    const day = await fetch(
      `${h.url}${EXPORT}?user_id=${encodeURIComponent(user)}&service_name=asset&from=2026-09-02&to=2026-09-02`,
      { headers: auth },
    );
    const dayRows = parseCsv(await day.text()).slice(1);
    // Seconds 57,600..143,999 after 2026-09-01T00:00Z, every 10th: 8,640 rows.
    expect(dayRows).to.have.length(8_640);
    expect(dayRows.every((r) => r[2] === 'asset')).to.equal(true);

    // A reader that goes away: the export stops reading pages (the pages are pulled, not pushed).
    let pageQueries = 0;
    const countPages = (q: { sql: string }) => {
      if (/from `consumption_records`/.test(q.sql) && /order by `created_at` asc/.test(q.sql)) pageQueries++;
    };
    db.on('query', countPages);
    try {
      const abort = new AbortController();
      const res = await fetch(`${h.url}${EXPORT}?user_id=${encodeURIComponent(user)}`, {
        headers: auth,
        signal: abort.signal,
      });
      const reader = res.body!.getReader();
      await reader.read();
      abort.abort();
      await new Promise((r) => setTimeout(r, 500));
      const afterAbort = pageQueries;
      await new Promise((r) => setTimeout(r, 1000));
      expect(pageQueries, 'no page read after the reader left').to.equal(afterAbort);
      expect(afterAbort, 'far fewer pages than the whole export').to.be.below(50);
    } finally {
      db.removeListener('query', countPages);
    }
    expect((await h.get('/healthz')).status).to.equal(200);
    await db('consumption_records').where('user_id', user).delete();
  });
});
