/**
 * Collective kinds: one table that the lowering, the cost model and the runtime share.
 * `bytes` of a collective is the size of the buffer it works on, per device: the local input
 * of an allreduce, reduce-scatter and all-to-all, the gathered output of an allgather, the
 * message of a send. What each device sends on a ring of n devices follows from it.
 */
export type CollectiveKind = 'allreduce' | 'allgather' | 'reduce-scatter' | 'all-to-all' | 'send';

export const COLLECTIVE_KINDS: readonly CollectiveKind[] = ['allreduce', 'allgather', 'reduce-scatter', 'all-to-all', 'send'];

/** Bytes one device sends: ring allreduce 2(n−1)/n, allgather, reduce-scatter and all-to-all (n−1)/n. */
export function sentBytes(kind: CollectiveKind, bytes: number, n: number): number {
  if (n <= 1) return 0;
  switch (kind) {
    case 'allreduce':
      return (2 * (n - 1) * bytes) / n;
    case 'allgather':
    case 'reduce-scatter':
    case 'all-to-all':
      return ((n - 1) * bytes) / n;
    case 'send':
      return bytes;
  }
}

/** Latency steps of the ring algorithm: 2(n−1) for allreduce, n−1 for the others, 1 for a send. */
export function latencySteps(kind: CollectiveKind, n: number): number {
  if (n <= 1) return 0;
  if (kind === 'allreduce') return 2 * (n - 1);
  if (kind === 'send') return 1;
  return n - 1;
}
