/**
 * Group commit: rows added while a write is in flight go out together in the next one, and each
 * caller's promise settles when the write that holds its row does. Without `lingerMs` nothing waits
 * on a timer, so a lone row is written at once; under load one INSERT (one commit) carries many rows
 * instead of one each. With `lingerMs`, a row that finds the writer idle waits that long for others
 * (for rows that trickle in, whose callers need not wait for them). A failed write fails every row of
 * it (their callers retry as they would alone).
 */
export class GroupWriter<T> {
  private queued: { row: T; done: (err?: unknown) => void }[] = [];
  private writing = false;

  constructor(
    private readonly write: (rows: T[]) => Promise<void>,
    private readonly maxRows = 500,
    private readonly lingerMs = 0,
  ) {}

  add(row: T): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queued.push({ row, done: (err) => (err === undefined ? resolve() : reject(err)) });
      if (!this.writing) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.writing = true;
    if (this.lingerMs > 0) await new Promise((r) => setTimeout(r, this.lingerMs));
    while (this.queued.length > 0) {
      const batch = this.queued.splice(0, this.maxRows);
      const err = await this.write(batch.map((b) => b.row)).then(
        () => undefined,
        (e: unknown) => e ?? new Error('group write failed'),
      );
      for (const b of batch) b.done(err);
    }
    this.writing = false;
  }
}
