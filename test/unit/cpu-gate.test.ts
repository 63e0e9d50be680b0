import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';
import { cpuGate, parseProcStat, type CpuGateOptions } from '../../src/lib/cpu-gate.js';

/**
 * A machine the test moves: each /proc/stat read advances the counters by one sample at `busyPercent`,
 * of which `ownPercent` is this process's (user time, niced or not as `niced` says).
 */
function fedMachine(start: { busyPercent: number; ownPercent?: number; niced?: boolean; failing?: boolean }) {
  // Large steps (1,000 s of CPU each), so that the test's own few ms do not count.
  const stepTicks = 100_000;
  const at = { normal: 0, idle: 0, ownUserUs: 0 };
  const readStat = () => {
    if (start.failing) return Promise.reject(new Error('EMFILE: too many open files'));
    const busy = (stepTicks * start.busyPercent) / 100;
    at.normal += busy;
    at.idle += stepTicks - busy;
    at.ownUserUs += ((stepTicks * (start.ownPercent ?? 0)) / 100) * 10_000;
    // user nice system idle iowait irq softirq steal guest guest_nice, ticks
    return Promise.resolve(`cpu  ${Math.round(at.normal)} 0 0 ${Math.round(at.idle)} 0 0 0 0 0 0\ncpu0 1 2 3 4\n`);
  };
  const ownCpu = () => ({ user: at.ownUserUs, system: 0, niced: start.niced ?? false });
  return { readStat, ownCpu };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** How long `p` took to resolve, in ms. */
async function timed(p: Promise<void>): Promise<number> {
  const t = performance.now();
  await p;
  return performance.now() - t;
}

const options = (o: Partial<CpuGateOptions>): CpuGateOptions => ({
  holdAbovePercent: 75,
  maxHoldMs: 60_000,
  sampleMs: 50,
  leaveOutOwn: false,
  ...o,
});

/*
 * The delivering process's CPU gate: it holds deliveries while the machine's CPU is busy with work at
 * normal priority, lets them go when it frees up, and never holds one longer than its limit.
 */
describe('cpu gate (deliveries wait for spare CPU)', function () {
  this.timeout(20_000);

  it('reads /proc/stat: nice, idle, iowait and steal are not busy', () => {
    const s = parseProcStat('cpu  100 50 20 800 30 5 5 7 0 0\ncpu0 1 1 1 1 1 1 1 1\nintr 5\n');
    expect(s).to.deep.equal({ totalMs: 10_170, normalMs: 1_300 });
    expect(parseProcStat('intr 5\n')).to.equal(null);
    expect(parseProcStat('cpu  a b c d e f g\n')).to.equal(null);
  });

  it('holds above its limit, lets go 5 points below it, and never holds past maxHoldMs', async () => {
    const load = { busyPercent: 95 };
    const changes: boolean[] = [];
    const gate = cpuGate(
      options({ maxHoldMs: 1_500, ...fedMachine(load), onChange: (holding) => changes.push(holding) }),
    );
    try {
      await sleep(200);
      expect(gate.busyPercent()).to.be.closeTo(95, 1);
      // Busy throughout: the waiter goes on at the limit, not before.
      expect(await timed(gate.wait())).to.be.within(1_400, 3_000);
      const waiting = timed(gate.wait());
      await sleep(300);
      load.busyPercent = 72; // below the limit, not below the margin: still held
      await sleep(300);
      load.busyPercent = 40;
      expect(await waiting).to.be.within(550, 1_300);
      expect(await timed(gate.wait())).to.be.below(50);
      expect(changes).to.deep.equal([true, false]);
    } finally {
      gate.stop();
    }
  });

  it('a process that only delivers leaves its own CPU out, unless niced (then /proc/stat has it as nice)', async () => {
    const busyOf = async (o: { leaveOutOwn: boolean; niced: boolean }) => {
      const machine = fedMachine({ busyPercent: 90, ownPercent: 30, niced: o.niced });
      const gate = cpuGate(options({ leaveOutOwn: o.leaveOutOwn, maxHoldMs: 300, ...machine }));
      await sleep(200);
      const busy = gate.busyPercent()!;
      const waited = await timed(gate.wait());
      gate.stop();
      // Held (above 75 %) until maxHoldMs, else not at all.
      if (busy > 75) expect(waited, JSON.stringify(o)).to.be.above(250);
      else expect(waited, JSON.stringify(o)).to.be.below(50);
      return busy;
    };
    expect(await busyOf({ leaveOutOwn: true, niced: false })).to.be.closeTo(60, 1);
    expect(await busyOf({ leaveOutOwn: true, niced: true })).to.be.closeTo(90, 1);
    expect(await busyOf({ leaveOutOwn: false, niced: false })).to.be.closeTo(90, 1);
  });

  it('stopping releases its waiters; 100 never holds; no /proc/stat never holds', async () => {
    const held = cpuGate(options({ holdAbovePercent: 50, ...fedMachine({ busyPercent: 99 }) }));
    await sleep(200);
    expect(held.busyPercent()).to.be.above(50);
    const waiting = timed(held.wait());
    await sleep(100);
    held.stop();
    expect(await waiting).to.be.within(50, 1_000);

    const never = cpuGate(options({ holdAbovePercent: 100, ...fedMachine({ busyPercent: 100 }) }));
    await sleep(200);
    expect(never.busyPercent()).to.equal(null);
    expect(await timed(never.wait())).to.be.below(50);
    never.stop();

    const missing = cpuGate(options({ holdAbovePercent: 1, readStat: () => Promise.reject(new Error('ENOENT')) }));
    await sleep(200);
    expect(await timed(missing.wait())).to.be.below(50);
    missing.stop();
  });

  it('a read failing after it held lets its waiters go, says so, and holds again once reads come back', async () => {
    const machine = { busyPercent: 95, failing: false };
    const errors: string[] = [];
    const gate = cpuGate(
      options({ ...fedMachine(machine), onChange: (_h, _b, err) => err && errors.push(err.message) }),
    );
    try {
      await sleep(200);
      const waiting = timed(gate.wait());
      await sleep(200);
      machine.failing = true;
      expect(await waiting).to.be.within(150, 1_000);
      expect(errors).to.deep.equal(['EMFILE: too many open files']);
      machine.failing = false;
      await sleep(300);
      expect(await Promise.race([gate.wait().then(() => 'released'), sleep(500).then(() => 'held')])).to.equal('held');
    } finally {
      gate.stop();
    }
  });

  it('on this machine: holds while other processes take every core', async () => {
    // Burners at this process's priority, one per core /proc/stat counts; each stops by itself.
    const gate = cpuGate(options({ maxHoldMs: 1_500, sampleMs: 250 }));
    const burners: ChildProcess[] = [];
    try {
      await sleep(600);
      const quiet = gate.busyPercent();
      for (let i = 0; i < cpus().length; i++)
        burners.push(
          spawn(process.execPath, ['-e', 'const end = Date.now() + 10000; while (Date.now() < end) {}'], {
            stdio: 'ignore',
          }),
        );
      await sleep(1_500);
      expect(gate.busyPercent(), `busy with burners (before: ${quiet})`).to.be.above(75);
      expect(await timed(gate.wait()), 'a wait while every core burns').to.be.above(1_000);
    } finally {
      for (const b of burners) b.kill('SIGKILL');
      gate.stop();
    }
  });
});
