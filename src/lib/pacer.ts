/**
 * Spaces what it admits at least 1000 / perSecond ms apart, first come first served: `await pace()`
 * before each start. One per webhook endpoint in the delivering process, so that a batch job's
 * deliveries keep the endpoint's rate as single jobs do.
 */
export function pacer(perSecond: number): () => Promise<void> {
  const gapMs = 1000 / perSecond;
  let nextAt = 0;
  return () => {
    const now = performance.now();
    const at = Math.max(now, nextAt);
    nextAt = at + gapMs;
    return at > now ? new Promise((resolve) => setTimeout(resolve, at - now)) : Promise.resolve();
  };
}
