import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { cpuGate, parseProcStat } from '../../src/lib/cpu-gate.js';

/** A /proc/stat reader the test moves: each read advances the counters by one sample at `busyPercent`. */
function fedStat(start: { busyPercent: number }) {
  // Large steps, so that this process's own few milliseconds of CPU (left out as its own) do not count.
  const step = 100_000;
  let normal = 0;
  let idle = 0;
  return () => {
    normal += (step * start.busyPercent) / 100;
    idle += step - (step * start.busyPercent) / 100;
    // user nice system idle iowait irq softirq steal guest guest_nice, ticks
    return Promise.resolve(`cpu  ${Math.round(normal)} 5000 0 ${Math.round(idle)} 0 0 0 0 0 0\ncpu0 1 2 3 4\n`);
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves to how long wait() took, in ms. */
async function timed(p: Promise<void>): Promise<number> {
  const t = performance.now();
  await p;
  return performance.now() - t;
}

/*
 * The delivering process's CPU gate: it holds deliveries while the machine's CPU is busy with work at
 * normal priority, lets them go when it frees up, and never holds one longer than its limit.
 */
describe('cpu gate (deliveries wait for spare CPU)', function () {
  this.timeout(20_000);

  it('reads /proc/stat: nice, idle and iowait are not busy', () => {
    const s = parseProcStat('cpu  100 50 20 800 30 5 5 0 0 0\ncpu0 1 1 1 1 1 1 1 1\nintr 5\n');
    expect(s).to.deep.equal({ totalMs: 10_100, normalMs: 1_300 });
    expect(parseProcStat('intr 5\n')).to.equal(null);
    expect(parseProcStat('cpu  a b c d e f g\n')).to.equal(null);
  });

  it('holds while busier than its limit, releases when the CPU frees up, and never holds past maxHoldMs', async () => {
    const load = { busyPercent: 95 };
    const changes: boolean[] = [];
    const gate = cpuGate({
      holdAbovePercent: 75,
      maxHoldMs: 1_500,
      sampleMs: 50,
      readStat: fedStat(load),
      onChange: (holding) => changes.push(holding),
    });
    try {
      await sleep(200);
      expect(gate.busyPercent()).to.be.closeTo(95, 1);
      // Busy throughout: the waiter goes on at the limit, not before.
      expect(await timed(gate.wait())).to.be.within(1_400, 3_000);
      const waiting = timed(gate.wait());
      await sleep(300);
      load.busyPercent = 40;
      expect(await waiting).to.be.within(250, 1_000);
      expect(await timed(gate.wait())).to.be.below(50);
      expect(changes).to.deep.equal([true, false]);
    } finally {
      gate.stop();
    }
  });

  it('stopping releases its waiters; 100 never holds; no /proc/stat never holds', async () => {
    const held = cpuGate({
      holdAbovePercent: 50,
      maxHoldMs: 60_000,
      sampleMs: 50,
      readStat: fedStat({ busyPercent: 99 }),
    });
    await sleep(200);
    const waiting = timed(held.wait());
    await sleep(100);
    held.stop();
    expect(await waiting).to.be.below(1_000);

    const never = cpuGate({
      holdAbovePercent: 100,
      maxHoldMs: 60_000,
      sampleMs: 50,
      readStat: fedStat({ busyPercent: 100 }),
    });
    await sleep(200);
    expect(never.busyPercent()).to.equal(null);
    expect(await timed(never.wait())).to.be.below(50);
    never.stop();

    const missing = cpuGate({
      holdAbovePercent: 1,
      maxHoldMs: 60_000,
      sampleMs: 50,
      readStat: () => Promise.reject(new Error('ENOENT')),
    });
    await sleep(200);
    expect(await timed(missing.wait())).to.be.below(50);
    missing.stop();
  });

  it('on this machine: holds while other processes take every core, releases once they stop', async () => {
    const gate = cpuGate({ holdAbovePercent: 75, maxHoldMs: 60_000, sampleMs: 250 });
    const burners: ChildProcess[] = [];
    try {
      await sleep(600);
      const quiet = gate.busyPercent();
      for (let i = 0; i < availableParallelism(); i++)
        burners.push(spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
      await sleep(1_500);
      expect(gate.busyPercent(), `busy with burners (before: ${quiet})`).to.be.above(75);
      const waiting = timed(gate.wait());
      await sleep(500);
      for (const b of burners) b.kill('SIGKILL');
      expect(await waiting).to.be.within(400, 5_000);
    } finally {
      for (const b of burners) b.kill('SIGKILL');
      gate.stop();
    }
  });
});
