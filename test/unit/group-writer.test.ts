import { expect } from 'chai';
import { GroupWriter } from '../../src/lib/group-writer.js';

/** A write that waits until released, so that a test decides what arrives while it is in flight. */
function gatedWrites() {
  const writes: number[][] = [];
  const gates: (() => void)[] = [];
  let failNext = false;
  const write = (rows: number[]) =>
    new Promise<void>((resolve, reject) => {
      writes.push(rows);
      const fail = failNext;
      failNext = false;
      gates.push(() => (fail ? reject(new Error('refused')) : resolve()));
    });
  return {
    writes,
    write,
    release: () => gates.shift()!(),
    failNextWrite: () => (failNext = true),
  };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('GroupWriter (group commit of rows)', () => {
  it('writes a lone row at once, and the rows that came meanwhile together in the next write', async () => {
    const g = gatedWrites();
    const writer = new GroupWriter(g.write);
    const first = writer.add(1);
    await tick();
    expect(g.writes).to.deep.equal([[1]]);
    const rest = [writer.add(2), writer.add(3), writer.add(4)];
    await tick();
    expect(g.writes).to.have.length(1);
    let settled = false;
    void Promise.all(rest).then(() => (settled = true));
    g.release();
    await first;
    await tick();
    expect(g.writes).to.deep.equal([[1], [2, 3, 4]]);
    expect(settled).to.equal(false);
    g.release();
    await Promise.all(rest);
  });

  it('fails every row of a failed write, and goes on with the next ones', async () => {
    const g = gatedWrites();
    const writer = new GroupWriter(g.write);
    g.failNextWrite();
    const a = writer.add(1);
    await tick();
    const b = writer.add(2);
    g.release();
    const outcome = await a.then(
      () => 'ok',
      (e: Error) => e.message,
    );
    expect(outcome).to.equal('refused');
    await tick();
    g.release();
    await b;
    expect(g.writes).to.deep.equal([[1], [2]]);
  });

  it('caps a write at maxRows', async () => {
    const g = gatedWrites();
    const writer = new GroupWriter(g.write, 2);
    const all = [writer.add(1)];
    await tick();
    all.push(writer.add(2), writer.add(3), writer.add(4));
    g.release();
    await tick();
    g.release();
    await tick();
    g.release();
    await Promise.all(all);
    expect(g.writes).to.deep.equal([[1], [2, 3], [4]]);
  });

  it('with lingerMs, a row that finds the writer idle waits for others to share its write', async () => {
    const g = gatedWrites();
    const writer = new GroupWriter(g.write, 500, 30);
    const rows = [writer.add(1)];
    await tick();
    expect(g.writes, 'nothing written while lingering').to.deep.equal([]);
    rows.push(writer.add(2), writer.add(3));
    await new Promise((r) => setTimeout(r, 60));
    expect(g.writes).to.deep.equal([[1, 2, 3]]);
    g.release();
    await Promise.all(rows);
  });
});
