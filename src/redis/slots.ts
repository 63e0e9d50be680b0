import keySlot from 'cluster-key-slot';

/** Redis Cluster's hash slots. */
export const SLOTS = 16_384;

let tags: string[] | null = null;

/**
 * For each hash slot, a short string that hashes to it. A key tagged `{<tag of slot s>}` lives in slot
 * s, so a per-slot index (users with journal entries, with holds, by last change) can be updated in
 * the same script as the user's own keys on a Redis Cluster. Computed once (about 200,000 CRC16s).
 */
export function slotTags(): readonly string[] {
  if (!tags) {
    const table: string[] = new Array<string>(SLOTS);
    let filled = 0;
    for (let n = 0; filled < SLOTS; n++) {
      const candidate = n.toString(36);
      const slot = keySlot(candidate);
      if (table[slot] === undefined) {
        table[slot] = candidate;
        filled++;
      }
    }
    tags = table;
  }
  return tags;
}

/** The tag of the slot a user's keys live in (their hash tag is the user id). */
export function slotTagOf(userId: string): string {
  return slotTags()[keySlot(userId)];
}
