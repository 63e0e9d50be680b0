// The package ships no types; ioredis uses the same function to route commands by slot.
declare module 'cluster-key-slot' {
  /** The Redis Cluster hash slot (0-16383) of a key, honouring its {hash tag}. */
  export default function keySlot(key: string | Buffer): number;
}
